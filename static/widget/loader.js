/*! Pivra widget loader: a launcher bubble and the chat iframe. Runs on the customer's page, so it
 * keeps to itself: one open shadow root, pivra- prefixed names, one global (window.Pivra). */
(function () {
  "use strict";
  var w = window;
  var d = document;
  if (w.Pivra && w.Pivra.loaded) return; // loaded twice: the first copy owns the page

  var SUFFIX = "/static/widget/loader.js";
  var script = d.currentScript;
  if (!script || !script.getAttribute("data-pivra-key")) {
    script = null;
    var all = d.querySelectorAll("script[data-pivra-key]");
    for (var i = 0; i < all.length; i++) {
      if ((all[i].src || "").split(/[?#]/)[0].slice(-SUFFIX.length) === SUFFIX) script = all[i];
    }
  }
  if (!script) return;
  var KEY = script.getAttribute("data-pivra-key") || "";
  var ORIGIN = new URL(script.src, location.href).origin;
  if (!KEY) return;

  var queued = (w.Pivra && w.Pivra.q) || [];
  var handlers = {};
  var isOpen = false;
  var isReady = false;
  var unread = 0;
  var host, launcherWrap, launcher, badge, frame;
  var lastUrl = "";
  // The launcher's words, in the chat's language: the frame sends them with pivra:ready (the launcher
  // is hidden until then). This file holds no visitor-facing text of its own.
  var labels = { open: "", close: "", unread: null, plural: null, lang: "" };

  var CSS =
    ":host{all:initial}" +
    ".pivra-l{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:56px;height:56px;margin:0;padding:0;border:0;border-radius:50%;" +
    "background:var(--pivra-accent,#4f46e5);color:#fff;cursor:pointer;display:flex;align-items:center;justify-content:center;" +
    "box-shadow:0 4px 14px rgba(0,0,0,.2),0 1px 3px rgba(0,0,0,.15);transition:transform .15s ease,box-shadow .15s ease;-webkit-tap-highlight-color:transparent}" +
    ".pivra-l:hover{transform:scale(1.06);box-shadow:0 6px 20px rgba(0,0,0,.24),0 2px 4px rgba(0,0,0,.15)}" +
    ".pivra-l:focus-visible{outline:3px solid #a5b4fc;outline-offset:3px}" +
    ".pivra-l svg{width:26px;height:26px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;transition:transform .2s ease,opacity .2s ease}" +
    ".pivra-x{position:absolute;transform:rotate(-90deg) scale(.6);opacity:0}" +
    ".pivra-o .pivra-c{transform:rotate(90deg) scale(.6);opacity:0}" +
    ".pivra-o .pivra-x{transform:none;opacity:1}" +
    ".pivra-b{position:absolute;top:-3px;right:-3px;min-width:20px;height:20px;padding:0 5px;box-sizing:border-box;border-radius:10px;border:2px solid #fff;" +
    "background:#e11d48;color:#fff;font:700 11px/16px system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;text-align:center}" +
    ".pivra-b[hidden]{display:none}" +
    ".pivra-f{position:fixed;right:20px;bottom:88px;z-index:2147483001;width:380px;height:600px;max-width:calc(100vw - 40px);max-height:calc(100vh - 108px);" +
    "margin:0;padding:0;border:0;border-radius:16px;background:#fff;color-scheme:light;box-shadow:0 12px 48px rgba(0,0,0,.18),0 2px 8px rgba(0,0,0,.08);" +
    "opacity:0;visibility:hidden;transform:translateY(12px) scale(.98);transform-origin:bottom right;transition:opacity .18s ease,transform .18s ease,visibility 0s linear .18s}" +
    ".pivra-o .pivra-f{opacity:1;visibility:visible;transform:none;transition:opacity .18s ease,transform .18s ease}" +
    "@media (max-width:480px){.pivra-f{top:0;left:0;right:0;bottom:0;width:100%;height:100%;max-width:none;max-height:none;border-radius:0}.pivra-o .pivra-l{display:none}}" +
    "@media (prefers-reduced-motion:reduce){.pivra-l,.pivra-f,.pivra-l svg{transition:none}}" +
    // Nothing shows until the chat says it is ready: on a site the chatbot does not allow, the
    // browser refuses the frame, and visitors would get an empty panel.
    ".pivra-w:not(.pivra-r) .pivra-l,.pivra-w:not(.pivra-r) .pivra-f{visibility:hidden}" +
    // A right-to-left chat (Arabic) sits in the bottom-left corner, its badge mirrored.
    ".pivra-rtl .pivra-l,.pivra-rtl .pivra-f{right:auto;left:20px}" +
    ".pivra-rtl .pivra-f{transform-origin:bottom left}" +
    ".pivra-rtl .pivra-b{right:auto;left:-3px}";
  var READY_WAIT_MS = 15000;

  function svg(cls, paths) {
    var ns = "http://www.w3.org/2000/svg";
    var s = d.createElementNS(ns, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("class", cls);
    for (var i = 0; i < paths.length; i++) {
      var p = d.createElementNS(ns, "path");
      p.setAttribute("d", paths[i]);
      s.appendChild(p);
    }
    return s;
  }

  function post(name, payload) {
    // Always the exact origin: the frame is Pivra's, nobody else may read these.
    if (frame && frame.contentWindow) frame.contentWindow.postMessage({ event: name, payload: payload || {} }, ORIGIN);
  }

  function emit(name, value) {
    var list = (handlers[name] || []).slice();
    for (var i = 0; i < list.length; i++) {
      try {
        list[i](value);
      } catch (err) {
        setTimeout(function () {
          throw err;
        });
      }
    }
  }

  function sendPage() {
    if (!isReady || location.href === lastUrl) return;
    lastUrl = location.href;
    post("pivra:page", { url: lastUrl });
  }

  function renderBadge() {
    var show = unread > 0 && !isOpen;
    badge.hidden = !show;
    badge.textContent = unread > 9 ? "9+" : String(unread);
    var label = isOpen ? labels.close : show ? unreadLabel(unread) || labels.open : labels.open;
    if (label) launcher.setAttribute("aria-label", label);
    else launcher.removeAttribute("aria-label");
  }

  // "Open chat (3 unread)": the language's plural form for the count (Intl.PluralRules category ->
  // form index, as the frame's config says).
  function unreadLabel(count) {
    var forms = labels.unread;
    if (!forms || !forms.length) return "";
    var index = forms.length - 1;
    try {
      var category = new Intl.PluralRules(labels.lang || undefined).select(count);
      var map = labels.plural || {};
      if (typeof map[category] === "number") index = map[category];
      else if (typeof map.other === "number") index = map.other;
    } catch (err) {
      /* no Intl.PluralRules: the last form */
    }
    return String(forms[Math.min(Math.max(0, index), forms.length - 1)]).replace(/\{n\}/g, String(count));
  }

  function browserLanguages() {
    var list = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""]) || [];
    var out = [];
    for (var i = 0; i < list.length && out.length < 8; i++) {
      if (typeof list[i] === "string" && list[i] && list[i].length <= 35) out.push(list[i]);
    }
    return out.join(",");
  }

  function applyLabels(p) {
    var l = p.labels && typeof p.labels === "object" ? p.labels : {};
    labels = {
      open: typeof l.open === "string" ? l.open : "",
      close: typeof l.close === "string" ? l.close : "",
      unread: Array.isArray(l.unread) ? l.unread : typeof l.unread === "string" ? [l.unread] : null,
      plural: l.plural && typeof l.plural === "object" ? l.plural : null,
      lang: typeof p.lang === "string" && p.lang.length <= 35 ? p.lang : "",
    };
    if (typeof l.frame === "string" && l.frame) frame.title = l.frame;
    launcherWrap.classList.toggle("pivra-rtl", p.dir === "rtl");
    renderBadge();
  }

  function setOpen(open) {
    open = !!open;
    if (!host || open === isOpen) return;
    isOpen = open;
    launcherWrap.classList.toggle("pivra-o", open);
    launcher.setAttribute("aria-expanded", String(open));
    if (open) unread = 0;
    renderBadge();
    post(open ? "pivra:open" : "pivra:close");
    if (open) {
      sendPage();
      try {
        frame.focus();
      } catch (err) {
        /* not focusable yet */
      }
    } else if (d.activeElement === host) {
      launcher.focus(); // focus was inside the chat: give it back to the bubble
    }
    emit(open ? "open" : "close");
  }

  function build() {
    if (d.getElementById("pivra-root")) return false;
    host = d.createElement("div");
    host.id = "pivra-root";
    // The host page's CSS must not hide or shift us.
    host.style.setProperty("display", "block", "important");
    host.style.setProperty("position", "static", "important");
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var sheetDone = false;
    try {
      // Constructed sheets also work under a host page's strict style-src CSP.
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
      sheetDone = root !== host;
    } catch (err) {
      /* older browser */
    }
    if (!sheetDone) {
      var style = d.createElement("style");
      if (script.nonce) style.nonce = script.nonce;
      style.textContent = CSS;
      root.appendChild(style);
    }

    launcherWrap = d.createElement("div");
    launcherWrap.className = "pivra-w";

    frame = d.createElement("iframe");
    frame.className = "pivra-f";
    frame.id = "pivra-frame";
    frame.src =
      ORIGIN + "/widget/frame/" + encodeURIComponent(KEY) + "/?origin=" + encodeURIComponent(location.origin) +
      "&langs=" + encodeURIComponent(browserLanguages()); // the chat negotiates its language with these
    frame.setAttribute("allow", "clipboard-write");

    launcher = d.createElement("button");
    launcher.type = "button";
    launcher.className = "pivra-l";
    launcher.setAttribute("aria-controls", "pivra-frame");
    launcher.setAttribute("aria-expanded", "false");
    var chatIcon = svg("pivra-c", ["M21 11.5a8.4 8.4 0 0 1-12.3 7.5L3 21l1.9-5.2A8.4 8.4 0 1 1 21 11.5z"]);
    var closeIcon = svg("pivra-x", ["M6 6l12 12", "M18 6 6 18"]);
    badge = d.createElement("span");
    badge.className = "pivra-b";
    badge.setAttribute("aria-hidden", "true");
    launcher.appendChild(chatIcon);
    launcher.appendChild(closeIcon);
    launcher.appendChild(badge);
    launcher.addEventListener("click", function () {
      setOpen(!isOpen);
    });

    var color = script.getAttribute("data-pivra-color");
    if (color) setAccent(color);

    launcherWrap.appendChild(frame);
    launcherWrap.appendChild(launcher);
    root.appendChild(launcherWrap);
    d.body.appendChild(host);
    renderBadge();
    return true;
  }

  function setAccent(color) {
    if (/^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(color || "")) launcherWrap.style.setProperty("--pivra-accent", color);
  }

  function onMessage(e) {
    if (!frame || e.origin !== ORIGIN || e.source !== frame.contentWindow) return;
    var m = e.data;
    if (!m || typeof m !== "object" || typeof m.event !== "string") return;
    var p = m.payload && typeof m.payload === "object" ? m.payload : {};
    if (m.event === "pivra:ready") {
      isReady = true;
      launcherWrap.classList.add("pivra-r");
      if (!script.getAttribute("data-pivra-color")) setAccent(p.accentColor);
      applyLabels(p);
      lastUrl = "";
      sendPage();
      if (isOpen) post("pivra:open"); // opened before the frame could hear it
      emit("ready");
      w.dispatchEvent(new CustomEvent("pivra:ready"));
    } else if (m.event === "pivra:close") {
      setOpen(false);
    } else if (m.event === "pivra:unread") {
      unread = isOpen ? 0 : Math.max(0, Math.floor(Number(p.count)) || 0);
      renderBadge();
      emit("unread", unread);
    }
  }

  // window.Pivra("open" | "close" | "toggle") and window.Pivra("on", name, fn).
  function api(command, a, b) {
    if (!host) {
      queued.push(arguments); // the page body isn't there yet
      return;
    }
    if (command === "open") setOpen(true);
    else if (command === "close") setOpen(false);
    else if (command === "toggle") setOpen(!isOpen);
    else if (command === "on" && typeof a === "string" && typeof b === "function") {
      (handlers[a] = handlers[a] || []).push(b);
      if (a === "ready" && isReady) b(); // late subscribers still hear about readiness
    }
  }
  api.loaded = true;
  w.Pivra = api;

  function init() {
    if (!build()) return;
    w.addEventListener("message", onMessage);
    w.addEventListener("popstate", sendPage);
    w.addEventListener("hashchange", sendPage);
    var calls = queued;
    queued = [];
    for (var i = 0; i < calls.length; i++) api.apply(null, calls[i]);
    setTimeout(function () {
      if (!isReady && w.console) {
        w.console.warn(
          "Pivra: the chat did not load on " + location.origin + ". If this is your site, add it to the " +
            "chatbot's allowed websites (Dashboard \u2192 Chatbot \u2192 Settings)."
        );
      }
    }, READY_WAIT_MS);
  }

  if (d.body) init();
  else d.addEventListener("DOMContentLoaded", init);
})();
