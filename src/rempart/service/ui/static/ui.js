/* Rempart moderator UI: keyboard shortcuts, reveal/re-blur, drop-to-search, import progress.
   Plain JavaScript, no library, served by Rempart itself. Every feature also works (more
   slowly) without it, except reveal and import progress. */
(function () {
  "use strict";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function typing(e) {
    var t = e.target;
    return t && (t.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName));
  }

  /* ---- the help dialog ---- */
  var help = document.getElementById("help");
  function showHelp() { if (help && !help.open) { help.showModal(); } }
  document.querySelectorAll("[data-help]").forEach(function (b) { b.addEventListener("click", showHelp); });

  /* ---- list navigation (queue, banks) ---- */
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-row]"));
  var current = -1;
  function focusRow(i) {
    if (!rows.length) { return; }
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, n) { r.classList.toggle("current", n === current); });
    var link = rows[current].querySelector("[data-open]");
    if (link) { link.focus(); }
  }
  rows.forEach(function (r, n) { r.addEventListener("focusin", function () { current = n; }); });

  /* ---- the preview: reveal one item on a deliberate click, re-blur on leaving ---- */
  var figure = document.getElementById("preview");
  var revealBtn = document.getElementById("reveal");
  var stateText = document.getElementById("preview-state");
  function setRevealed(on) {
    if (!figure || !revealBtn) { return; }
    figure.classList.toggle("revealed", on);
    revealBtn.setAttribute("aria-pressed", on ? "true" : "false");
    var label = document.getElementById("reveal-label") || revealBtn;
    label.textContent = revealBtn.getAttribute(on ? "data-label-hide" : "data-label-reveal");
    if (stateText) {
      stateText.textContent = revealBtn.getAttribute(on ? "data-state-revealed" : "data-state-blurred");
    }
  }
  function toggleReveal() {
    if (!figure) { return; }
    if (figure.classList.contains("revealed")) { setRevealed(false); return; }
    // The audit entry is written first; the blur only comes off once the server has it.
    fetch(figure.getAttribute("data-reveal-url"), {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin"
    }).then(function (r) { if (r.ok) { setRevealed(true); } });
  }
  if (revealBtn) { revealBtn.addEventListener("click", toggleReveal); }
  /* A preview that cannot be opened after all (sealed under another key, or altered): say
     so in words rather than show a broken image, and take the reveal button away. */
  var previewImg = document.getElementById("preview-img");
  function previewUnavailable() {
    var note = document.getElementById("preview-unavailable");
    if (!figure || !note) { return; }
    figure.hidden = true;
    if (revealBtn) { revealBtn.hidden = true; }
    var revealHelp = document.getElementById("reveal-help");
    if (revealHelp) { revealHelp.hidden = true; }
    note.hidden = false;
    figure = null;
  }
  if (previewImg) {
    previewImg.addEventListener("error", previewUnavailable);
    if (previewImg.complete && previewImg.naturalWidth === 0) { previewUnavailable(); }
  }
  function reblur() { setRevealed(false); }
  var item = document.getElementById("item");
  if (item) {
    item.addEventListener("mouseleave", reblur);
    window.addEventListener("pagehide", reblur);
    window.addEventListener("blur", reblur);
    document.addEventListener("visibilitychange", function () { if (document.hidden) { reblur(); } });
  }

  function submitForm(id) {
    /* Presses one of the decision buttons, so the form sends that decision (and the note). */
    var button = document.getElementById(id);
    if (!button || button.disabled || !button.form) { return; }
    reblur();
    if (button.form.requestSubmit) { button.form.requestSubmit(button); } else { button.click(); }
  }
  function follow(rel) {
    var a = document.querySelector('a[rel="' + rel + '"]');
    if (a) { reblur(); window.location.href = a.href; }
  }

  /* ---- shortcuts ---- */
  var pendingG = false;
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) { return; }
    if (help && help.open) { return; }
    var k = e.key;
    if (pendingG) {
      pendingG = false;
      var to = { q: "/ui/queue", b: "/ui/banks", d: "/ui/dashboard" }[k];
      // g a only where the page offers the audit log (admins)
      if (k === "a" && document.querySelector('nav a[href="/ui/audit"]')) { to = "/ui/audit"; }
      if (to) { e.preventDefault(); window.location.href = to; }
      return;
    }
    if (k === "g") { pendingG = true; return; }
    if (k === "?") { e.preventDefault(); showHelp(); return; }
    if (item) {
      var actions = {
        v: toggleReveal,
        c: function () { submitForm("decide-confirm"); },
        r: function () { submitForm("decide-reject"); },
        e: function () { submitForm("decide-escalate"); },
        j: function () { follow("next"); }, n: function () { follow("next"); },
        k: function () { follow("prev"); }, p: function () { follow("prev"); },
        u: function () { var a = document.querySelector('a[data-key="u"]'); if (a) { reblur(); window.location.href = a.href; } }
      };
      if (actions[k]) { e.preventDefault(); actions[k](); }
      return;
    }
    if (rows.length) {
      if (k === "j" || k === "ArrowDown") { e.preventDefault(); focusRow(current + 1); }
      else if (k === "k" || k === "ArrowUp") { e.preventDefault(); focusRow(current - 1); }
      else if (k === "o" && current >= 0) {
        var link = rows[current].querySelector("[data-open]");
        if (link) { window.location.href = link.href; }
      }
    }
  });

  /* ---- banks: drop a file to search (hashed by the server in memory, never kept) ---- */
  var drop = document.getElementById("drop");
  if (drop) {
    var input = drop.querySelector("input[type=file]");
    ["dragenter", "dragover"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      drop.addEventListener(ev, function () { drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        drop.submit();
      }
    });
    input.addEventListener("change", function () { if (input.files.length) { drop.submit(); } });
  }

  /* ---- banks: import with progress ---- */
  var importForm = document.getElementById("import");
  if (importForm) {
    var bar = document.getElementById("import-progress");
    var status = document.getElementById("import-status");
    importForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var file = document.getElementById("import-file").files[0];
      if (!file) { return; }
      var mode = document.getElementById("import-mode").value;
      bar.hidden = false;
      bar.removeAttribute("value");
      status.textContent = "";
      fetch(importForm.getAttribute("data-url") + "?mode=" + encodeURIComponent(mode), {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/octet-stream" },
        body: file,
        credentials: "same-origin"
      }).then(function (resp) {
        var reader = resp.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function handle(line) {
          if (!line.trim()) { return; }
          var msg;
          try { msg = JSON.parse(line); } catch (err) { return; }
          if (msg.progress !== undefined) {
            status.textContent = status.getAttribute("data-rows").replace("{n}", msg.progress);
          } else if (msg.report) {
            bar.value = 100;
            status.textContent = status.getAttribute("data-done")
              .replace("{added}", msg.report.added).replace("{duplicates}", msg.report.duplicates || 0);
          } else if (msg.error) {
            bar.hidden = true;
            status.textContent = status.getAttribute("data-failed") + " " + msg.error.message;
          }
        }
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { handle(buffer); return; }
            buffer += decoder.decode(chunk.value, { stream: true });
            var lines = buffer.split("\n");
            buffer = lines.pop();
            lines.forEach(handle);
            return pump();
          });
        }
        if (!resp.ok) { bar.hidden = true; status.textContent = status.getAttribute("data-failed") + " " + resp.status; return; }
        return pump();
      });
    });
  }
})();
