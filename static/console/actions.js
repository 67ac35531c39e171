// Actions pages: show only the fields of the chosen kind, and copy the signing secret.
// A classic script (not a module): the strings come from the catalogue's globals (console/base.html loads it
// first), English when it did not load.
(function () {
  "use strict";
  var gettext = typeof window.gettext === "function" ? window.gettext : function (msgid) { return msgid; };
  var form = document.querySelector("[data-action-form]");
  if (form) {
    var sync = function () {
      var checked = form.querySelector('input[name="kind"]:checked');
      var kind = checked ? checked.value : "";
      form.querySelectorAll("[data-kind-field]").forEach(function (el) {
        var kinds = el.getAttribute("data-kind-field").split(" ");
        el.hidden = kind !== "" && kinds.indexOf(kind) === -1;
      });
    };
    form.addEventListener("change", function (event) {
      if (event.target && event.target.name === "kind") sync();
    });
    sync();
  }
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target || !navigator.clipboard) return;
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        var label = button.textContent;
        button.textContent = gettext("Copied");
        setTimeout(function () { button.textContent = label; }, 1500);
      });
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (!window.confirm(f.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
})();
