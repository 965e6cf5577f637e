// Keyboard shortcuts (listed in the #shortcuts dialog of the chat page):
//   Ctrl/Cmd+Shift+O   new chat
//   /  or  Shift+Esc   focus the message box ("/" only when not typing)
//   ?  or  Ctrl+/      show the shortcuts ("?" only when not typing); Esc closes them
(function () {
  "use strict";

  function isTyping(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function focusComposer() {
    var box = document.querySelector("#composer textarea");
    if (!box) return false;
    box.focus();
    return true;
  }

  function openHelp() {
    var dialog = document.getElementById("shortcuts");
    if (!dialog || dialog.open) return false;
    dialog.showModal();
    return true;
  }

  document.addEventListener("click", function (event) {
    if (event.target instanceof Element && event.target.closest(".help-open")) openHelp();
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing || event.altKey) return;
    // A modal dialog is open: it handles its own keys (Esc closes it).
    if (document.querySelector("dialog[open]")) return;
    var mod = event.ctrlKey || event.metaKey;
    var key = event.key;
    var done = false;

    if (mod && event.shiftKey && (key === "o" || key === "O")) {
      var link = document.querySelector("a.new-chat");
      if (link) { window.location.assign(link.href); done = true; }
    } else if (mod && key === "/") {
      done = openHelp();
    } else if (key === "Escape" && event.shiftKey && !mod) {
      done = focusComposer();
    } else if (!mod && !isTyping(event.target)) {
      if (key === "/") done = focusComposer();
      else if (key === "?") done = openHelp();
    }
    if (done) event.preventDefault();
  });
})();
