/* The pages' only script: fit the Bitrix24 frame, stop double submits, live template
   preview, go on after an action. Everything works without it; the BX24 library is
   optional (it may fail to load). */
(function () {
  "use strict";

  var fit = function () {};

  function loadBx24() {
    // Loaded here, not by a <script> tag, so a slow or blocked api.bitrix24.com never
    // holds the page up.
    var script = document.createElement("script");
    script.src = "//api.bitrix24.com/api/v1/";
    script.async = true;
    script.onload = function () {
      if (!window.BX24 || typeof window.BX24.init !== "function") { return; }
      window.BX24.init(function () {
        fit = function () {
          if (typeof window.BX24.fitWindow === "function") { window.BX24.fitWindow(); }
          else if (typeof window.BX24.resizeWindow === "function") {
            window.BX24.resizeWindow(document.body.scrollWidth, document.body.scrollHeight);
          }
        };
        document.documentElement.setAttribute("data-bx24", "ready");
        fit();
      });
    };
    script.onerror = function () {
      document.documentElement.setAttribute("data-bx24", "unavailable");
    };
    document.head.appendChild(script);
  }

  var fitTimer = null;
  function fitSoon() {
    clearTimeout(fitTimer);
    fitTimer = setTimeout(function () { fit(); }, 50);
  }

  function guardDoubleSubmit() {
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (form.getAttribute("data-sent") === "1") { event.preventDefault(); return; }
        form.setAttribute("data-sent", "1");
        // Disabled on the next tick: disabling now would drop the clicked button's value.
        setTimeout(function () {
          form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
        }, 0);
      });
    });
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) { return; }
      document.querySelectorAll("form[data-sent]").forEach(function (form) {
        form.removeAttribute("data-sent");
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
      });
    });
  }

  function meta(name) {
    var el = document.querySelector("meta[name=" + name + "]");
    return el ? el.content : "";
  }

  // After an action the server answers a page that posts on to the next one (the token
  // stays out of URLs); without this script its button does the same.
  function continueAtOnce() {
    var next = document.querySelector("form[data-auto]");
    if (next) { next.submit(); }
  }

  function livePreview() {
    var form = document.getElementById("template-form");
    if (!form || !window.fetch) { return; }
    form.querySelectorAll("[data-no-js]").forEach(function (el) { el.hidden = true; });
    var timer = null;
    var update = function () {
      var body = new URLSearchParams(new FormData(form));
      fetch(form.getAttribute("data-preview"), {
        method: "POST", body: body, credentials: "omit",
        headers: {"X-Loyalty-Token": meta("loyalty-token"), "X-CSRF-Token": meta("loyalty-csrf")}
      }).then(function (r) { return r.json(); }).then(showPreview).catch(function () {});
    };
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(update, 300);
    });
    form.setAttribute("data-live", "on");  // typing now updates the preview (tests wait for it)
  }

  function showPreview(data) {
    var error = document.getElementById("preview-error");
    var subject = document.getElementById("preview-subject");
    var html = document.getElementById("preview-html");
    var text = document.getElementById("preview-text");
    error.hidden = !data.error;
    error.textContent = data.error || "";
    if (data.error) { fitSoon(); return; }
    if (subject) { subject.textContent = data.subject || ""; }
    if (html) { html.srcdoc = data.body || ""; }  // a sandboxed frame: no scripts run
    if (text) { text.textContent = data.body || ""; }
    document.documentElement.setAttribute("data-preview", "updated");
    fitSoon();
  }

  document.addEventListener("DOMContentLoaded", function () {
    continueAtOnce();
    guardDoubleSubmit();
    livePreview();
    if (window.MutationObserver) {
      new MutationObserver(fitSoon).observe(document.body, {childList: true, subtree: true});
    }
    window.addEventListener("resize", fitSoon);
    loadBx24();
  });
})();
