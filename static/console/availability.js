// The sidebar's status control: Online / Away / Offline for this workspace, stored on the server
// (PUT /api/console/workspaces/{id}/availability), so it is kept across reloads and tabs. Without
// JavaScript the same form posts to the dashboard and comes back to the page.

import { sendJson } from "./console.js";

const form = document.querySelector("[data-availability]");

function show(form, value) {
  const dot = form.querySelector("[data-availability-dot]");
  if (dot) dot.className = `status-dot status-${value}`;
}

async function save(form, value) {
  const url = `/api/console/workspaces/${encodeURIComponent(form.dataset.workspace)}/availability`;
  return sendJson(url, { availability: value }, "PUT");
}

if (form) {
  const select = form.querySelector("[data-availability-select]");
  const error = form.querySelector("[data-availability-error]");
  let current = select.value;
  select.addEventListener("change", async () => {
    const wanted = select.value;
    error.textContent = "";
    show(form, wanted);
    select.disabled = true;
    try {
      const data = await save(form, wanted);
      current = data.availability;
      select.value = current;
      show(form, current);
    } catch (failure) {
      select.value = current;
      show(form, current);
      error.textContent = failure.message;
    } finally {
      select.disabled = false;
    }
  });
}
