// Runs in <head> before the stylesheets are applied: the chosen theme is set before the
// first paint. No stored choice (or "system"): no data-theme, and the CSS follows
// prefers-color-scheme. The "js" class lets the CSS show controls that need JavaScript.
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");
  try {
    var theme = window.localStorage.getItem("chatsite-theme");
    if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  } catch (e) {
    // Storage can be disabled: the system preference then applies.
  }
})();
