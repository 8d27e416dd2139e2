// The console's only script: refresh each [data-poll] fragment every data-every ms, without a full reload.
// A fragment that fails to load keeps its last content and is marked stale; nothing is fetched from elsewhere.
(function () {
  "use strict";
  document.querySelectorAll("[data-poll]").forEach(function (el) {
    var every = parseInt(el.getAttribute("data-every"), 10) || 5000;
    var busy = false;
    var refresh = function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch(el.getAttribute("data-poll"), { credentials: "same-origin", headers: { "X-Console-Fragment": "1" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { location.reload(); return null; }
          return r.ok ? r.text() : Promise.reject(r.status);
        })
        .then(function (html) {
          if (html !== null) { el.innerHTML = html; el.classList.remove("stale"); el.setAttribute("data-refreshed", String(Date.now())); }
        })
        .catch(function () { el.classList.add("stale"); })
        .then(function () { busy = false; });
    };
    if (el.getAttribute("data-eager")) refresh();  // a slow part loaded after the page
    setInterval(refresh, every);
  });
})();
