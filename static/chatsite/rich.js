// Look and feel: Copy buttons on code blocks, the theme choice, the phone menu and a
// screen-reader announcement when a reply ends. Event delegation throughout, so it works
// for the page as loaded and for everything htmx swaps in later.
(function () {
  "use strict";

  // --- Copy buttons (rendered by the server in each code block) -------------------------

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-http origins other than localhost have no Clipboard API.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      area.remove();
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element && event.target.closest(".code-block button.copy");
    if (!button) return;
    var code = button.closest(".code-block").querySelector("pre code");
    if (!code) return;
    copyText(code.textContent).then(
      function () { flash(button, "Copied"); },
      function () { flash(button, "Copy failed"); }
    );
  });

  function flash(button, text) {
    clearTimeout(button._flash);
    button.textContent = text;
    button._flash = setTimeout(function () { button.textContent = "Copy"; }, 1500);
  }

  // --- Theme: system / light / dark, remembered in localStorage -------------------------

  var THEME_KEY = "chatsite-theme";

  function storedTheme() {
    try { return window.localStorage.getItem(THEME_KEY) || "system"; } catch (e) { return "system"; }
  }

  function applyTheme(theme) {
    var root = document.documentElement;
    if (theme === "light" || theme === "dark") root.dataset.theme = theme;
    else delete root.dataset.theme;
    try {
      if (theme === "light" || theme === "dark") window.localStorage.setItem(THEME_KEY, theme);
      else window.localStorage.removeItem(THEME_KEY);
    } catch (e) {
      // Not remembered, but applied for this page.
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target instanceof HTMLSelectElement && event.target.id === "theme-select") {
      applyTheme(event.target.value);
    }
  });

  // --- Phone menu: the conversation list folds behind a button --------------------------

  document.addEventListener("click", function (event) {
    var toggle = event.target instanceof Element && event.target.closest(".menu-toggle");
    if (!toggle) return;
    var sidebar = toggle.closest(".sidebar");
    var open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    sidebar.classList.toggle("menu-open", open);
  });

  // --- Screen readers: one announcement when a reply ends -------------------------------

  var IN_FLIGHT = { pending: true, streaming: true };
  var ENDED = {
    complete: "Reply finished.",
    stopped: "Reply stopped.",
    interrupted: "Reply interrupted.",
    error: "Reply failed.",
  };
  var watching = {};

  function announce(text) {
    var region = document.getElementById("announcer");
    if (!region) return;
    // Emptied first, so the same words said twice in a row are still read out.
    region.textContent = "";
    setTimeout(function () { region.textContent = text; }, 50);
  }

  function checkReplies() {
    document.querySelectorAll('#thread article[data-role="assistant"]').forEach(function (article) {
      var id = article.id;
      var status = article.dataset.status;
      if (IN_FLIGHT[status]) {
        watching[id] = true;
      } else if (watching[id]) {
        delete watching[id];
        var text = ENDED[status] || "Reply ended.";
        var error = article.querySelector(".msg-error");
        if (status === "error" && error) text += " " + error.textContent.trim();
        announce(text);
      }
    });
  }

  var pending = false;
  var observer = new MutationObserver(function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; checkReplies(); });
  });

  function start() {
    var select = document.getElementById("theme-select");
    if (select) select.value = storedTheme();
    checkReplies();
    observer.observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"],
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
