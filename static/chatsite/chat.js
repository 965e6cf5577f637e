// Small progressive enhancements for the chat page. Everything works without this file:
// the forms post normally and the server redirects back to the conversation.
(function () {
  "use strict";

  function busy() {
    return document.querySelector('#thread [data-status="pending"], #thread [data-status="streaming"]') !== null;
  }

  // While a reply is being written, the composer cannot send another one.
  function syncComposer() {
    var form = document.getElementById("composer");
    if (!form) return;
    var isBusy = busy();
    form.dataset.busy = isBusy ? "true" : "false";
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = isBusy;
    // Switching versions or regenerating waits for the reply being written too (the server
    // would refuse with 409): those buttons rest until it ends.
    document.querySelectorAll("#thread .versions form button, #thread .msg-regenerate button").forEach(function (other) {
      if (isBusy && !other.disabled) {
        other.disabled = true;
        other.dataset.busyDisabled = "true";
      } else if (!isBusy && other.dataset.busyDisabled) {
        other.disabled = false;
        delete other.dataset.busyDisabled;
      }
    });
  }

  // The message box takes the focus on a page load, except on a phone, where that would
  // open the on-screen keyboard over the conversation.
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("#composer textarea");
    if (box && window.matchMedia("(min-width: 721px)").matches && document.activeElement === document.body) {
      box.focus();
    }
  });

  function scrollThread() {
    var thread = document.getElementById("thread");
    if (!thread) return;
    var nearBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 160;
    if (nearBottom) window.scrollTo(0, document.body.scrollHeight);
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLTextAreaElement) || !target.closest("#composer")) return;
    if (target.name !== "content") return;  // the settings' system prompt takes Enter as a newline
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      var form = target.form;
      if (form && form.dataset.busy !== "true") form.requestSubmit();
    }
  });

  // Grow the textarea with its content.
  document.addEventListener("input", function (event) {
    var target = event.target;
    if (target instanceof HTMLTextAreaElement && target.closest("#composer")) {
      target.style.height = "auto";
      target.style.height = Math.min(target.scrollHeight, 240) + "px";
    }
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "composer" && event.detail.successful) {
      var textarea = document.querySelector("#composer textarea");
      if (textarea) {
        textarea.value = "";
        textarea.style.height = "auto";
        textarea.focus();
      }
      var error = document.getElementById("composer-error");
      if (error) error.textContent = "";
      var empty = document.getElementById("empty-state");
      if (empty) empty.remove();
    }
  });

  // A failed request that htmx does not swap still gets a visible answer.
  var STATUS_TEXT = {
    403: "This page has expired. Reload it and try again.",
    404: "That conversation no longer exists.",
    413: "That is too much to send at once.",
  };
  document.addEventListener("htmx:responseError", function (event) {
    var error = document.getElementById("composer-error");
    if (!error) return;
    var xhr = event.detail.xhr;
    var isText = (xhr.getResponseHeader("Content-Type") || "").indexOf("text/plain") === 0;
    error.textContent = (isText && xhr.responseText.slice(0, 300)) || STATUS_TEXT[xhr.status] ||
      (xhr.status >= 500 ? "The server had a problem. What you see is saved; reload to carry on."
                         : "The server refused the request (" + xhr.status + ").");
  });
  document.addEventListener("htmx:sendError", function () {
    var error = document.getElementById("composer-error");
    if (error) error.textContent = "Cannot reach chatsite. Check your connection and try again.";
  });

  // The first piece of text shown turns a pending reply into a streaming one.
  document.addEventListener("htmx:sseMessage", function (event) {
    var type = event.detail.type, names = document.body.dataset;
    if ((type !== names.sseTail && type !== names.sseBlock) || !event.detail.data) return;
    var article = event.target.closest("article[data-status]");
    if (article && article.dataset.status === "pending") article.dataset.status = "streaming";
  });

  // A reasoning model's thinking (templates/conversations/_reasoning.html): shown once it
  // comes, folded when the answer begins (the server's `thought` event gives its title),
  // emptied with the answer when the answer so far proves to be thinking (`reset`). Only
  // the server's sanitized HTML is shown; clearing is all this does to it.
  document.addEventListener("htmx:sseMessage", function (event) {
    var target = event.target;
    var details = target.closest ? target.closest("details.reasoning") : null;
    var article = target.closest ? target.closest("article[data-status]") : null;
    if (details && target.classList.contains("think-reset")) {
      article.querySelectorAll(".msg-body > .md-blocks, .msg-body > .md-tail, .think-blocks, .think-tail").forEach(function (part) {
        part.textContent = "";
      });
      details.open = true;
      return;
    }
    if (!details) return;
    if (target.classList.contains("reasoning-title")) {
      details.open = false;
      return;
    }
    if (event.detail.data) {
      details.hidden = false;
      if (article && article.dataset.status === "pending") article.dataset.status = "streaming";
    }
  });

  // The finished reply replaces the streamed one, its thinking folded: a block the reader
  // opened again after it folded stays open.
  var keepOpen = null;
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (event.detail.type !== document.body.dataset.sseDone) return;
    var article = event.target.closest("article[data-message]");
    var details = article && article.querySelector("details.reasoning");
    var title = details && details.querySelector(".reasoning-title");
    keepOpen = details && details.open && title && title.dataset.thought ? article.id : null;
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.target.classList && event.target.classList.contains("reasoning-title")) {
      event.target.dataset.thought = "true";
    }
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!keepOpen) return;
    var details = document.querySelector("#" + keepOpen + " details.reasoning");
    keepOpen = null;
    if (details) details.open = true;
  });

  // afterRequest too: htmx re-enables its hx-disabled-elt (the Send button) when the request
  // ends, after the swap that added the pending reply; settling comes 20 ms later.
  ["htmx:afterSwap", "htmx:afterRequest", "htmx:afterSettle", "htmx:sseMessage", "htmx:sseClose", "DOMContentLoaded"].forEach(function (name) {
    document.addEventListener(name, function () {
      syncComposer();
      scrollThread();
    });
  });
})();

// Keyboard users keep their place: after a control inside a message (‹ ›, Regenerate, Stop,
// an edit) swaps the thread, focus goes to the same control of the message now at that
// place, else another of its version buttons, else the message itself.
(function () {
  "use strict";
  var restore = null;

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.closest("#thread")) return;
    var article = form.closest("article[data-message]");
    if (!article) return;
    var articles = Array.prototype.slice.call(document.querySelectorAll("#thread > article"));
    var button = form.querySelector("button[type=submit]");
    restore = { index: articles.indexOf(article), cls: button ? button.classList[0] : "" };
  });

  // A streamed reply is replaced whole when it ends: keep the focus of whoever is on it.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (event.detail.type !== document.body.dataset.sseDone) return;
    var focused = document.activeElement;
    var article = focused && focused.closest ? focused.closest("#thread > article") : null;
    if (!article) return;
    var articles = Array.prototype.slice.call(document.querySelectorAll("#thread > article"));
    restore = { index: articles.indexOf(article), cls: focused.classList[0] || "" };
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!restore || restore.index < 0) return;
    var place = restore;
    restore = null;
    var articles = document.querySelectorAll("#thread > article");
    var article = articles[Math.min(place.index, articles.length - 1)];
    if (!article) return;
    var target = (place.cls && article.querySelector("button." + place.cls + ":not([disabled])")) ||
      article.querySelector(".versions button:not([disabled])");
    if (!target) {
      article.setAttribute("tabindex", "-1");
      target = article;
    }
    target.focus();
  });
})();

// --- Attachments --------------------------------------------------------------------
// The composer's file input is the one place files live: dropped and pasted files are put
// into it (DataTransfer), chips show what it holds, each with a description (alt text)
// and a Remove button. Without this the input posts the files as it is.
(function () {
  "use strict";
  var captions = new WeakMap();
  var PREVIEW_BYTES = 8 * 1024 * 1024;

  function fileInput() {
    return document.querySelector('#composer input[type=file][name=attachments]');
  }

  function setFiles(input, files) {
    var transfer = new DataTransfer();
    files.forEach(function (file) { transfer.items.add(file); });
    input.files = transfer.files;
    renderChips(input);
  }

  function addFiles(files) {
    var input = fileInput();
    if (!input || !files.length) return false;
    setFiles(input, Array.prototype.slice.call(input.files).concat(files));
    return true;
  }

  function sizeLabel(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  function renderChips(input) {
    var list = document.getElementById("attach-chips");
    if (!list) return;
    list.textContent = "";
    var files = Array.prototype.slice.call(input.files);
    files.forEach(function (file, index) {
      var chip = document.createElement("li");
      chip.className = "attach-chip";
      if (file.type.indexOf("image/") === 0 && file.size <= PREVIEW_BYTES) {
        // A data: URL (the page's CSP allows images from itself and data:, not blob:).
        var img = document.createElement("img");
        img.alt = "";
        var reader = new FileReader();
        reader.onload = function () { img.src = reader.result; };
        reader.readAsDataURL(file);
        chip.appendChild(img);
      }
      var name = document.createElement("span");
      name.className = "attach-chip-name";
      name.textContent = file.name + " · " + sizeLabel(file.size);
      chip.appendChild(name);
      var caption = document.createElement("input");
      caption.type = "text";
      caption.name = "caption";
      caption.maxLength = 300;
      caption.placeholder = "Description (alt text)";
      caption.setAttribute("aria-label", "Description of " + file.name);
      caption.value = captions.get(file) || "";
      caption.addEventListener("input", function () { captions.set(file, caption.value); });
      chip.appendChild(caption);
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "attach-chip-remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", "Remove " + file.name);
      remove.addEventListener("click", function () {
        setFiles(input, files.filter(function (_, other) { return other !== index; }));
        var box = document.querySelector("#composer textarea");
        if (box) box.focus();
      });
      chip.appendChild(remove);
      list.appendChild(chip);
    });
  }

  // The no-JavaScript description field gives way to one per chip.
  function enhanceComposer() {
    document.querySelectorAll("#composer .composer-caption input").forEach(function (field) {
      field.disabled = true;
    });
    var input = fileInput();
    if (input) renderChips(input);
  }

  document.addEventListener("DOMContentLoaded", enhanceComposer);
  document.addEventListener("htmx:afterSettle", enhanceComposer);

  document.addEventListener("change", function (event) {
    if (event.target === fileInput()) renderChips(event.target);
  });

  document.addEventListener("paste", function (event) {
    if (!event.target.closest || !event.target.closest("#composer")) return;
    var files = Array.prototype.slice.call((event.clipboardData && event.clipboardData.files) || []);
    if (files.length && addFiles(files)) event.preventDefault();
  });

  function dropZone(event) {
    return event.target.closest && event.target.closest("#composer");
  }
  document.addEventListener("dragover", function (event) {
    if (!dropZone(event) || !event.dataTransfer) return;
    if (Array.prototype.indexOf.call(event.dataTransfer.types, "Files") < 0) return;
    event.preventDefault();
    document.getElementById("composer").classList.add("dragging");
  });
  document.addEventListener("dragleave", function (event) {
    var form = dropZone(event);
    if (form && !form.contains(event.relatedTarget)) form.classList.remove("dragging");
  });
  document.addEventListener("drop", function (event) {
    var form = dropZone(event);
    if (!form || !event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    form.classList.remove("dragging");
    addFiles(Array.prototype.slice.call(event.dataTransfer.files));
  });

  // Sent: the files go with the text.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.id !== "composer" || !event.detail.successful) return;
    var input = fileInput();
    if (input) setFiles(input, []);
  });

  // A thumbnail opens the full image in a dialog (Escape or Close shuts it); the link
  // itself opens the image without JavaScript.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.attachment-view");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    var dialog = document.getElementById("image-viewer");
    if (!dialog) {
      dialog = document.createElement("dialog");
      dialog.id = "image-viewer";
      dialog.className = "image-viewer";
      var close = document.createElement("button");
      close.type = "button";
      close.textContent = "Close";
      close.addEventListener("click", function () { dialog.close(); });
      dialog.appendChild(close);
      dialog.appendChild(document.createElement("img"));
      document.body.appendChild(dialog);
      dialog.addEventListener("close", function () {
        if (dialog.opener && dialog.opener.isConnected) dialog.opener.focus();
      });
    }
    var thumb = link.querySelector("img");
    var full = dialog.querySelector("img");
    full.src = link.getAttribute("href");
    full.alt = thumb ? thumb.alt : "";
    dialog.setAttribute("aria-label", full.alt || "Image");
    dialog.opener = link;
    dialog.showModal();
  });
})();
