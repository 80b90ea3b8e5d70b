// The approver's page: pending requests from the admin routes, approved or denied with a reason.
// Function-key mode keeps the key in sessionStorage (this tab only) and sends it as x-functions-key;
// Easy Auth mode relies on the platform's session cookie.
(function () {
  "use strict";
  var root = document.getElementById("manage");
  if (!root) { return; }
  var messages = JSON.parse(document.getElementById("messages").textContent);
  var api = root.getAttribute("data-api");
  var mode = root.getAttribute("data-mode");
  var list = document.getElementById("requests");
  var status = document.getElementById("manage-message");
  var keyForm = document.getElementById("key-form");
  var KEY = "signup-portal-function-key";

  function key() { return sessionStorage.getItem(KEY); }
  function headers(extra) {
    var h = { Accept: "application/json" };
    if (mode === "keys" && key()) { h["x-functions-key"] = key(); }
    Object.keys(extra || {}).forEach(function (k) { h[k] = extra[k]; });
    return h;
  }
  function call(method, path, body) {
    return fetch(api + path, {
      method: method, credentials: "same-origin",
      // Every write is JSON (the admin routes refuse anything else), an approval without a reason too.
      headers: headers(method === "POST" ? { "Content-Type": "application/json" } : null),
      body: method === "POST" ? JSON.stringify(body || {}) : undefined
    });
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (cls) { node.className = cls; }
    return node;
  }
  function row(dl, term, value) {
    if (value === undefined || value === null || value === "") { return; }
    dl.appendChild(el("dt", term));
    dl.appendChild(el("dd", value));
  }
  function render(item) {
    var li = el("li", null, "request");
    li.id = "request-" + item.id;
    var heading = el("h2", item.displayName + " <" + item.email + ">");
    heading.id = "request-heading-" + item.id;
    heading.tabIndex = -1;
    li.setAttribute("aria-labelledby", heading.id);
    li.appendChild(heading);
    var dl = el("dl");
    row(dl, messages.domain, item.domain);
    row(dl, messages.company, item.company);
    row(dl, messages.justification, item.justification);
    row(dl, messages.requested, item.createdAt);
    Object.keys(item.answers || {}).forEach(function (question) { row(dl, question, item.answers[question]); });
    li.appendChild(dl);
    var details = el("details");
    details.appendChild(el("summary", messages.history + " / " + messages.answers));
    var history = el("ol");
    details.appendChild(history);
    details.addEventListener("toggle", function () {
      if (!details.open || history.childNodes.length) { return; }
      call("GET", "/manage/signups/" + item.id).then(function (r) { return r.json(); }).then(function (full) {
        (full.history || []).forEach(function (h) {
          var text = h.at + " · " + h.event + " · " + h.actor;
          if (h.detail && h.detail.answers) { text += " · " + JSON.stringify(h.detail.answers); }
          history.appendChild(el("li", text));
        });
      });
    });
    li.appendChild(details);
    var reasonId = "reason-" + item.id;
    var label = el("label", messages.reason);
    label.setAttribute("for", reasonId);
    var reason = el("textarea");
    reason.id = reasonId;
    reason.rows = 2;
    reason.maxLength = 500;
    var error = el("p", "", "error-message");
    error.id = reasonId + "-error";
    error.hidden = true;
    reason.setAttribute("aria-describedby", error.id);
    li.appendChild(label);
    li.appendChild(error);
    li.appendChild(reason);
    var actions = el("div", null, "actions");
    var approve = el("button", messages.approve);
    approve.type = "button";
    var deny = el("button", messages.deny, "secondary");
    deny.type = "button";
    actions.appendChild(approve);
    actions.appendChild(deny);
    li.appendChild(actions);
    function decide(action) {
      var text = reason.value.trim();
      if (action === "deny" && !text) {
        error.textContent = messages.reason_required;
        error.hidden = false;
        reason.setAttribute("aria-invalid", "true");
        reason.focus();
        return;
      }
      approve.disabled = deny.disabled = true;
      call("POST", "/manage/signups/" + item.id + "/" + action, text ? { reason: text } : null)
        .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); })
        .then(function (result) {
          if (result.status === 200) {
            status.textContent = (action === "approve" ? messages.approved : messages.denied) + " " + item.displayName;
          } else if (result.status === 409) {
            var current = result.body.current || {};
            status.textContent = messages.decided_elsewhere.replace("%(outcome)s", current.status || "");
          } else {
            status.textContent = messages.load_failed;
            approve.disabled = deny.disabled = false;
            return;
          }
          var next = li.nextElementSibling || li.previousElementSibling;
          li.remove();
          if (next) { next.querySelector("h2").focus(); } else { list.appendChild(el("li", messages.none)); }
        });
    }
    approve.addEventListener("click", function () { decide("approve"); });
    deny.addEventListener("click", function () { decide("deny"); });
    return li;
  }
  function load() {
    call("GET", "/manage/signups?status=pending_approval&pageSize=100").then(function (response) {
      if (response.status === 401 || response.status === 403) {
        if (mode === "keys") { sessionStorage.removeItem(KEY); askForKey(); }
        status.textContent = messages.load_failed;
        return null;
      }
      return response.json();
    }).then(function (page) {
      if (!page) { return; }
      list.textContent = "";
      if (!page.items.length) { list.appendChild(el("li", messages.none)); return; }
      page.items.forEach(function (item) { list.appendChild(render(item)); });
      var focus = root.getAttribute("data-focus-id");
      var target = focus && document.getElementById("request-heading-" + focus);
      if (target) { target.focus(); }
    }).catch(function () { status.textContent = messages.load_failed; });
  }
  function askForKey() {
    keyForm.hidden = false;
    document.getElementById("function-key").focus();
  }
  if (mode === "keys") {
    var params = new URLSearchParams(window.location.search);
    if (params.get("code")) {
      sessionStorage.setItem(KEY, params.get("code"));
      params.delete("code");
      history.replaceState(null, "", window.location.pathname + (params.toString() ? "?" + params.toString() : ""));
    }
    keyForm.addEventListener("submit", function (event) {
      event.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById("function-key").value);
      keyForm.hidden = true;
      load();
    });
    if (key()) { load(); } else { askForKey(); }
  } else if (root.getAttribute("data-signed-in") !== "false" && root.getAttribute("data-can-approve") !== "false") {
    load();
  }
})();
