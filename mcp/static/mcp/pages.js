// Maestro MCP pages: keep health badges and the run's evidence badge current without a reload.
// Elements with data-poll="URL" are refreshed every data-poll-seconds while the tab is visible.
(function () {
  "use strict";

  function setBadge(el, className, text, title) {
    if (!el) return;
    el.className = className;
    el.textContent = text;
    el.title = title;
  }

  var apply = {
    health: function (box, data) {
      (data.servers || []).forEach(function (server) {
        setBadge(box.querySelector('[data-health-id="' + server.id + '"]'), "badge health-" + server.status, server.status, server.title);
        var detail = box.querySelector('[data-health-detail="' + server.id + '"]');
        if (detail) detail.textContent = server.detail;
      });
    },
    run: function (box, data) {
      var chain = data.chain || {};
      setBadge(document.getElementById("chain-badge"), "badge chain-" + chain.state, chain.label, chain.title);
      var shown = parseInt(box.getAttribute("data-shown-head"), 10) || 0;
      var notice = document.getElementById("new-calls");
      var fresh = data.head_seq - shown;
      if (notice && shown >= 0 && fresh > 0) {
        notice.querySelector("[data-count]").textContent = String(fresh);
        notice.hidden = false;
      }
    }
  };

  function watch(box) {
    var url = box.getAttribute("data-poll");
    var kind = apply[box.getAttribute("data-poll-kind")];
    var every = (parseFloat(box.getAttribute("data-poll-seconds")) || 5) * 1000;
    if (!url || !kind) return;
    function later(ms) { window.setTimeout(tick, ms); }
    function tick() {
      if (document.hidden) { later(every); return; }
      window.fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 401 || response.status === 403) return null;  // signed out: stop
          return response.ok ? response.json() : {};
        })
        .then(function (data) {
          if (data === null) return;
          if (data.servers || data.chain) kind(box, data);
          later(every);
        }, function () { later(every * 3); });  // the gateway is restarting: try again, slower
    }
    later(every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), watch);
  });
})();
