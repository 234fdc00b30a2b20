// Live status without a build step: poll small JSON endpoints and update in place.
(function () {
  "use strict";
  function busy() {
    // Never reload under someone who is typing a comment or a reason.
    var el = document.activeElement;
    if (el && /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)) return true;
    var fields = document.querySelectorAll("textarea, input[name=reason]");
    for (var i = 0; i < fields.length; i++) if (fields[i].value) return true;
    return false;
  }
  function poll(url, every, onData) {
    function tick() {
      fetch(url(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) onData(data); })
        .catch(function () {})
        .finally(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }
  var list = document.querySelector("[data-live-list]");
  if (list) {
    poll(function () {
      var ids = Array.prototype.map.call(list.querySelectorAll("[data-status-for]"),
        function (el) { return "id=" + encodeURIComponent(el.getAttribute("data-status-for")); });
      return "/ui/executions/status?" + ids.join("&");
    }, 3000, function (data) {
      list.querySelectorAll("[data-status-for]").forEach(function (el) {
        var s = data[el.getAttribute("data-status-for")];
        if (s && el.textContent !== s.replace(/_/g, " ")) {
          el.textContent = s.replace(/_/g, " ");
          el.className = "status s-" + s;
        }
      });
    });
  }
  var page = document.querySelector("[data-live-execution]");
  if (page) {
    var id = page.getAttribute("data-live-execution");
    poll(function () { return "/ui/executions/" + encodeURIComponent(id) + "/version"; }, 1500,
      function (data) {
        if (data.version !== page.getAttribute("data-version") && !busy()) {
          window.location.reload();
        }
      });
  }
})();
