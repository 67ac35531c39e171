// Pivra's service worker, served as /dashboard/sw.js (scope /dashboard/): Web Push for agents.
//
// A push carries {kind, title, body, tag, url} (notifications/webpush.py), encrypted for this browser.
// When a dashboard tab is visible the agent already sees it live, so nothing is shown; otherwise one
// notification per conversation (the tag: a newer one replaces the older). A click focuses an open
// dashboard tab and shows the conversation there, or opens a new tab.

const DASHBOARD = "/dashboard/";

function sameOriginDashboardUrl(value) {
  try {
    const url = new URL(String(value || DASHBOARD), self.location.origin);
    return url.origin === self.location.origin && url.pathname.startsWith(DASHBOARD) ? url.href : null;
  } catch {
    return null;
  }
}

async function dashboardWindows() {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  return windows.filter((client) => new URL(client.url).pathname.startsWith(DASHBOARD));
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  event.waitUntil(
    (async () => {
      const windows = await dashboardWindows();
      if (windows.some((client) => client.visibilityState === "visible" || client.focused)) return;
      await self.registration.showNotification(String(data.title || "Pivra").slice(0, 120), {
        body: String(data.body || "").slice(0, 300),
        tag: String(data.tag || "pivra").slice(0, 80),
        data: { url: sameOriginDashboardUrl(data.url) || self.location.origin + DASHBOARD },
      });
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = sameOriginDashboardUrl(event.notification.data && event.notification.data.url);
  if (!url) return;
  event.waitUntil(
    (async () => {
      const [tab] = await dashboardWindows();
      if (tab) {
        await tab.focus();
        tab.postMessage({ type: "pivra.open", url: new URL(url).pathname });
        return;
      }
      await self.clients.openWindow(url);
    })(),
  );
});
