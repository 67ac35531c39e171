/*
 * "Export → Email transcript…" on the conversation page: a dialog that sends the visitor-facing
 * transcript (never internal notes) to the lead's address or one the agent types
 * (POST /api/console/conversations/<id>/transcript; the server checks and rate-limits it).
 */

import { postJson } from "./console.js";
import { gettext, interpolate } from "./i18n.js";

const opener = document.querySelector("[data-email-transcript]");
const dialog = document.querySelector("[data-transcript-dialog]");

if (opener && dialog) {
  const form = dialog.querySelector("[data-transcript-form]");
  const input = form.querySelector("input[name=email]");
  const error = form.querySelector("[data-transcript-error]");
  const done = form.querySelector("[data-transcript-done]");
  const send = form.querySelector("[data-transcript-send]");

  const showError = (text) => {
    error.textContent = text;
    error.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };

  opener.addEventListener("click", () => {
    const menu = opener.closest("details");
    if (menu) menu.open = false;
    showError("");
    done.hidden = true;
    send.disabled = false;
    dialog.showModal();
    input.focus();
    input.select();
  });

  input.addEventListener("input", () => {
    showError("");
    done.hidden = true;
  });

  form.addEventListener("submit", async (event) => {
    if (event.submitter && event.submitter.value !== "send") return; // Close
    event.preventDefault();
    const email = input.value.trim();
    if (!email) {
      showError(gettext("Enter the email address to send the transcript to."));
      input.focus();
      return;
    }
    send.disabled = true;
    showError("");
    try {
      const body = await postJson(form.dataset.url, { email });
      const message = gettext("Transcript queued for %(email)s: it goes out in a moment.");
      done.textContent = interpolate(message, { email: body.email }, true); // text only
      done.hidden = false;
    } catch (err) {
      showError(err.message);
      input.focus();
    } finally {
      send.disabled = false;
    }
  });
}
