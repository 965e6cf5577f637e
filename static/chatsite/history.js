// Managing history, progressively enhanced. Without this file renaming still works (the
// form posts and the server redirects back); with it a new title shows everywhere at once.
(function () {
  "use strict";

  // A conversation got a new title (renamed, or titled automatically after its first
  // reply): the server says so in an HX-Trigger header.
  document.addEventListener("chatsite:title", function (event) {
    var detail = event.detail || {};
    if (typeof detail.id !== "number" || typeof detail.title !== "string") return;
    document.querySelectorAll('#sidebar-list a[data-conversation="' + detail.id + '"]').forEach(function (link) {
      link.textContent = detail.title;
    });
    var header = document.getElementById("conversation-header");
    if (header && header.dataset.conversationId === String(detail.id)) {
      var title = document.getElementById("conversation-title");
      if (title) title.textContent = detail.title;
      var input = document.getElementById("rename-title");
      if (input && document.activeElement !== input) input.value = detail.title;
      document.title = detail.title + " · chatsite";
    }
  });
})();
