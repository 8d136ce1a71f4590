// The dogs dashboard's script: every page works without it. It refreshes the pages that ask
// for it (data-refresh on <main>) by fetching the page again and swapping its <main>, selects
// every row of a listing at once, and asks before destructive actions.
(function () {
  "use strict";

  function wire(root) {
    root.querySelectorAll("input[data-select-all]").forEach(function (all) {
      all.addEventListener("change", function () {
        var form = all.closest("form");
        if (!form) return;
        form.querySelectorAll('input[type=checkbox][name=id]').forEach(function (box) {
          box.checked = all.checked;
        });
        count(form);
      });
    });
    root.querySelectorAll("form").forEach(function (form) {
      form.querySelectorAll('input[type=checkbox][name=id]').forEach(function (box) {
        box.addEventListener("change", function () { count(form); });
      });
    });
  }

  function count(form) {
    var label = form.querySelector("[data-selected]");
    if (!label) return;
    var n = form.querySelectorAll('input[type=checkbox][name=id]:checked').length;
    label.textContent = n === 0 ? "Select jobs to act on several at once."
      : n === 1 ? "1 job selected" : n + " jobs selected";
  }

  // Asks before a destructive action: the form or the pressed button carries data-confirm.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    var text = (button && button.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (text && !window.confirm(text)) {
      event.preventDefault();
    }
  });

  function busy(main) {
    // No refresh while the operator is choosing rows or typing.
    if (main.querySelector('input[type=checkbox]:checked')) return true;
    var active = document.activeElement;
    return !!(active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
  }

  function refresh() {
    var main = document.getElementById("main");
    if (!main || !main.hasAttribute("data-refresh") || document.hidden || busy(main)) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Dogs-Refresh": "1" } })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("main");
        var current = document.getElementById("main");
        if (!fresh || !current || busy(current)) return;
        current.replaceWith(fresh);
        wire(fresh);
        document.body.classList.remove("stale");
      })
      .catch(function () {
        document.body.classList.add("stale");
      });
  }

  function start() {
    wire(document);
    var main = document.getElementById("main");
    var seconds = main ? parseInt(main.getAttribute("data-refresh") || "0", 10) : 0;
    if (seconds > 0) window.setInterval(refresh, seconds * 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
