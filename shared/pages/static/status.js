// The status page (reached without JavaScript after a form post): with JavaScript it updates by itself.
(function () {
  "use strict";
  var view = document.getElementById("status-view");
  if (!view || view.getAttribute("data-final") === "true") { return; }
  var messages = JSON.parse(document.getElementById("messages").textContent);
  var message = document.getElementById("status-message");
  var FINAL = { invited: true, failed: true, denied: true, expired: true };
  function poll() {
    fetch(view.getAttribute("data-status-url"), { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (status) {
        var text = messages["status_" + status.status] || messages.status_queued;
        if (message.textContent !== text) { message.textContent = text; }
        if (!FINAL[status.status]) { setTimeout(poll, 2000); }
      })
      .catch(function () { setTimeout(poll, 4000); });
  }
  setTimeout(poll, 1000);
})();
