// The admin's console: tabs over the admin routes (pending, recent decisions, failures, conversions, reviews,
// overview), filters, paging by continuation token, decisions one by one or in bulk, and dates in the reader's
// language and time zone. Function-key mode keeps the key in sessionStorage (this tab only) and sends it as
// x-functions-key; Easy Auth mode relies on the platform's session cookie. overview.js draws the overview.
(function () {
  "use strict";
  var root = document.getElementById("manage");
  if (!root) { return; }
  var M = JSON.parse(document.getElementById("messages").textContent);
  var api = root.getAttribute("data-api");
  var mode = root.getAttribute("data-mode");
  var canApprove = root.getAttribute("data-can-approve") !== "false";
  var lang = document.documentElement.lang || "en";
  var status = document.getElementById("manage-message");
  var keyForm = document.getElementById("key-form");
  var consoleBox = document.getElementById("console");
  var KEY = "signup-portal-function-key";
  // Page size: 50, or ?pageSize= (1 to 100) for an admin who wants shorter or longer pages.
  var PAGE = Math.min(Math.max(parseInt(new URLSearchParams(window.location.search).get("pageSize"), 10) || 50, 1), 100);
  var BULK = 100;       // ids per bulk call
  // Pages read on per "Load more" while they bring nothing to show: the list may answer empty pages with a token
  // (it bounds its work per page) and recent decisions are picked out here.
  var SCAN_PAGES = 40;
  // The browser's own time zone; the zone's name is shown so that a time is never ambiguous.
  var moment = new Intl.DateTimeFormat(lang, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  var numbers = new Intl.NumberFormat(lang);

  function fill(text, values) {
    return text.replace(/%\((\w+)\)s/g, function (_, name) { return values[name] === undefined ? "" : values[name]; });
  }
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
  // A call's status and JSON body ({} when there is none); a 401 or 403 asks for the key again.
  function request(method, path, body) {
    return call(method, path, body).then(function (r) {
      if (r.status === 401 && mode === "keys") { sessionStorage.removeItem(KEY); askForKey(); }
      return r.json().catch(function () { return {}; }).then(function (b) { return { status: r.status, body: b }; });
    });
  }
  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== "") {
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(params[k]));
      }
    });
    return parts.length ? "?" + parts.join("&") : "";
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (cls) { node.className = cls; }
    return node;
  }
  // A moment as a <time>: the machine-readable value in the attribute, the reader's words in the text.
  function when(iso) {
    var t = el("time", iso ? moment.format(new Date(iso)) : "");
    if (iso) { t.dateTime = iso; }
    return t;
  }
  function row(dl, term, value) {
    if (value === undefined || value === null || value === "") { return null; }
    dl.appendChild(el("dt", term));
    var dd = el("dd");
    if (typeof value === "string") { dd.textContent = value; } else { dd.appendChild(value); }
    return dl.appendChild(dd);
  }
  function sentence(parts) {
    var span = el("span");
    parts.forEach(function (p) { span.appendChild(typeof p === "string" ? document.createTextNode(p) : p); });
    return span;
  }
  // "%(outcome)s by %(by)s, %(when)s" with the time as a <time> element.
  function decidedText(decision) {
    var text = M.decided.split("%(when)s");
    var outcome = M["outcome_" + decision.outcome] || decision.outcome;
    var head = fill(text[0], { outcome: outcome, by: decision.by || "" });
    var tail = fill(text[1] || "", { outcome: outcome, by: decision.by || "" });
    var node = sentence([head, when(decision.at), tail]);
    if (decision.reason) { node.appendChild(document.createTextNode(" · " + decision.reason)); }
    return node;
  }
  function summarise(results, field) {
    var counts = {};
    results.forEach(function (r) { counts[r[field]] = (counts[r[field]] || 0) + 1; });
    return Object.keys(counts).map(function (k) {
      return (M["result_" + k] || k) + ": " + numbers.format(counts[k]);
    }).join(" · ");
  }
  function notAvailable(message) { message.textContent = M.not_available; }
  // A route this server does not have: 404 without a problem body (the app's own 404s are problem+json).
  function missing(r) { return r.status === 404 && !r.body.type; }

  // ---- Tabs (WAI-ARIA tabs, automatic activation: arrows, Home and End move and select) ----
  var tabs = Array.prototype.slice.call(document.querySelectorAll("[role=tab]"));
  var loaded = {};
  var loaders = {};
  function select(tab, focus) {
    tabs.forEach(function (t) {
      var on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    });
    if (focus) { tab.focus(); }
    var name = tab.getAttribute("data-tab");
    var params = new URLSearchParams(window.location.search);
    params.set("tab", name);
    history.replaceState(null, "", window.location.pathname + "?" + params.toString());
    if (!loaded[name] && loaders[name]) { loaded[name] = true; loaders[name](); }
  }
  tabs.forEach(function (tab, i) {
    tab.addEventListener("click", function () { select(tab, false); });
    tab.addEventListener("keydown", function (event) {
      var next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next === undefined) { return; }
      event.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length], true);
    });
  });

  // ---- Lists of sign-ups (pending, recent decisions, failures, conversions) ----
  function historyDetails(item) {
    var details = el("details");
    details.appendChild(el("summary", M.history + " / " + M.answers));
    var list = el("ol");
    details.appendChild(list);
    details.addEventListener("toggle", function () {
      if (!details.open || list.childNodes.length) { return; }
      request("GET", "/manage/signups/" + encodeURIComponent(item.id)).then(function (r) {
        (r.body.history || []).forEach(function (h) {
          var parts = [when(h.at), " · " + h.event + " · " + h.actor];
          if (h.detail && h.detail.answers) { parts.push(" · " + JSON.stringify(h.detail.answers)); }
          list.appendChild(el("li")).appendChild(sentence(parts));
        });
      });
    });
    return details;
  }
  function checkbox(li, id, name, bulk) {
    var box = el("div", null, "field field--checkbox select-one");
    var input = el("input");
    input.type = "checkbox";
    input.id = "select-" + id;
    input.value = id;
    var label = el("label", fill(M.select_item, { name: name }));
    label.htmlFor = input.id;
    box.appendChild(input);
    box.appendChild(label);
    input.addEventListener("change", function () { bulk.count(); });
    li.appendChild(box);
  }
  function signupCard(item, list) {
    var li = el("li", null, "request");
    li.id = "request-" + item.id;
    li.setAttribute("data-id", item.id);
    var name = item.displayName + " <" + item.email + ">";
    if (list.bulk) { checkbox(li, item.id, name, list.bulk); }
    var heading = el("h3", name);
    heading.id = "request-heading-" + item.id;
    heading.tabIndex = -1;
    li.setAttribute("aria-labelledby", heading.id);
    li.insertBefore(heading, li.firstChild);
    var dl = el("dl");
    row(dl, M.status, M.statuses[item.status] || item.status);
    row(dl, M.domain, item.domain);
    row(dl, M.profile, item.policy && item.policy.profile);
    row(dl, M.company, item.company);
    row(dl, M.justification, item.justification);
    var created = when(item.createdAt);
    created.className = "created";
    row(dl, fill(M.requested, { when: "" }).trim(), created);
    if (item.updatedAt && item.updatedAt !== item.createdAt) { row(dl, M.updated, when(item.updatedAt)); }
    if (item.decision) { row(dl, M.decision, decidedText(item.decision)); }
    if (item.invitation) { row(dl, M.invitation, item.invitation.invitationStatus); }
    if (item.conversion) { row(dl, M.conversion, item.conversion.user || item.conversion.email); }
    if (item.error) { row(dl, M.error, item.error.code + (item.error.message ? ": " + item.error.message : "")); }
    Object.keys(item.answers || {}).forEach(function (question) { row(dl, question, item.answers[question]); });
    li.appendChild(dl);
    li.appendChild(historyDetails(item));
    if (list.name === "pending" && canApprove) { decisionButtons(li, item, list); }
    return li;
  }
  function decisionButtons(li, item, list) {
    var reasonId = "reason-" + item.id;
    var label = el("label", M.reason);
    label.htmlFor = reasonId;
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
    var approve = el("button", M.approve);
    approve.type = "button";
    var deny = el("button", M.deny, "secondary");
    deny.type = "button";
    actions.appendChild(approve);
    actions.appendChild(deny);
    li.appendChild(actions);
    function decide(action) {
      var text = reason.value.trim();
      if (action === "deny" && !text) {
        error.textContent = M.reason_required;
        error.hidden = false;
        reason.setAttribute("aria-invalid", "true");
        reason.focus();
        return;
      }
      approve.disabled = deny.disabled = true;
      request("POST", "/manage/signups/" + encodeURIComponent(item.id) + "/" + action, text ? { reason: text } : null)
        .then(function (result) {
          if (result.status === 200) {
            status.textContent = (action === "approve" ? M.approved : M.denied) + " " + item.displayName;
          } else if (result.status === 409) {
            var current = result.body.current || {};
            status.textContent = fill(M.decided_elsewhere, { outcome: M.statuses[current.status] || current.status });
          } else {
            status.textContent = M.load_failed;
            approve.disabled = deny.disabled = false;
            return;
          }
          list.remove([item.id]);
        });
    }
    approve.addEventListener("click", function () { decide("approve"); });
    deny.addEventListener("click", function () { decide("deny"); });
  }

  // One list: its filters, its pages (continuation tokens) and, for pending, its bulk decisions.
  function List(name, options) {
    var self = this;
    self.name = name;
    self.ul = document.getElementById(options.listId);
    self.more = document.getElementById(name + "-more");
    self.message = document.getElementById(name + "-message");
    self.form = document.getElementById(name + "-filters");
    self.path = options.path;
    self.fixed = options.fixed || {};
    self.keep = options.keep || function () { return true; };
    self.card = options.card;
    self.token = null;
    self.shown = 0;
    self.busy = false;
    self.generation = 0;  // a new filter outdates the pages still on their way
    if (options.bulk) { self.bulk = new Bulk(name, self, options.bulk); }
    if (self.form) {
      self.form.addEventListener("submit", function (event) { event.preventDefault(); self.reset(); });
      self.form.addEventListener("reset", function () { setTimeout(function () { self.reset(); }, 0); });
    }
    self.more.addEventListener("click", function () { self.page(true); });
  }
  List.prototype.params = function () {
    var params = {};
    if (this.form) {
      new FormData(this.form).forEach(function (value, k) { params[k] = String(value).trim(); });
    }
    Object.keys(this.fixed).forEach(function (k) { params[k] = this.fixed[k]; }, this);
    return params;
  };
  List.prototype.reset = function () {
    this.generation += 1;
    this.busy = false;
    this.ul.textContent = "";
    this.token = null;
    this.shown = 0;
    if (this.bulk) { this.bulk.count(); }
    this.page(false);
  };
  // Reads the next page; a list that filters on the page reads on (a few pages at most) until it has something.
  List.prototype.page = function (focusNew) {
    var self = this;
    if (self.busy) { return; }
    self.busy = true;
    self.more.disabled = true;
    self.message.textContent = M.working;
    var firstNew = null;
    var generation = self.generation;
    var params = self.params();
    params.pageSize = PAGE;
    function read(round) {
      params.continuationToken = self.token;
      return request("GET", self.path + query(params)).then(function (r) {
        if (generation !== self.generation) { return "stale"; }
        if (missing(r)) { return "missing"; }
        if (r.status === 400) { return "refused"; }
        if (r.status !== 200) { throw new Error(String(r.status)); }
        r.body.items.filter(self.keep).forEach(function (item) {
          var card = self.card(item, self);
          self.ul.appendChild(card);
          self.shown += 1;
          firstNew = firstNew || card;
        });
        self.token = r.body.continuationToken || null;
        if (!firstNew && self.token && round < SCAN_PAGES) { return read(round + 1); }
        return "ok";
      });
    }
    read(1).then(function (outcome) {
      if (outcome === "stale") { return; }
      if (outcome === "missing") { notAvailable(self.message); self.more.hidden = true; return; }
      if (outcome === "refused") { self.message.textContent = M.bad_filters; self.more.hidden = true; return; }
      self.message.textContent = self.shown ? fill(M.shown, { count: numbers.format(self.shown) }) : M.no_items;
      self.more.hidden = !self.token;
      if (self.bulk) { self.bulk.count(); }
      if (focusNew && firstNew) { firstNew.querySelector("h3").focus(); }
      self.focusRequested();
    }).catch(function () {
      if (generation === self.generation) { self.message.textContent = M.load_failed; }
    }).then(function () {
      if (generation === self.generation) { self.busy = false; self.more.disabled = false; }
    });
  };
  // The request a link names (?id=, from the approvers' mail) gets the focus once shown.
  List.prototype.focusRequested = function () {
    var focus = root.getAttribute("data-focus-id");
    var target = focus && document.getElementById("request-heading-" + focus);
    if (target && !target.hidden) { target.focus(); root.setAttribute("data-focus-id", ""); }
  };
  List.prototype.remove = function (ids) {
    var self = this;
    var next = null;
    ids.forEach(function (id) {
      var li = self.ul.querySelector('[data-id="' + CSS.escape(id) + '"]');
      if (!li) { return; }
      next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      self.shown -= 1;
    });
    while (next && !next.parentNode) { next = null; }
    if (next && next.querySelector("h3")) { next.querySelector("h3").focus(); }
    self.message.textContent = self.shown ? fill(M.shown, { count: numbers.format(self.shown) }) : M.no_items;
    if (self.bulk) { self.bulk.count(); }
  };
  List.prototype.selected = function () {
    return Array.prototype.slice.call(this.ul.querySelectorAll(".select-one input:checked")).map(function (i) {
      return i.value;
    });
  };

  // Bulk decisions: the ticked entries, one reason, one call per hundred.
  function Bulk(name, list, options) {
    var self = this;
    self.list = list;
    self.all = document.getElementById(name + "-all");
    self.counter = document.getElementById(name + "-selected");
    self.reason = document.getElementById(name + "-bulk-reason");
    self.error = document.getElementById(name + "-bulk-error");
    self.yes = document.getElementById(name + "-bulk-yes");
    self.no = document.getElementById(name + "-bulk-no");
    self.options = options;
    self.all.addEventListener("change", function () {
      list.ul.querySelectorAll(".select-one input").forEach(function (i) { i.checked = self.all.checked; });
      self.count();
    });
    self.yes.addEventListener("click", function () { self.decide(options.yes); });
    self.no.addEventListener("click", function () { self.decide(options.no); });
  }
  Bulk.prototype.count = function () {
    var chosen = this.list.selected().length;
    var boxes = this.list.ul.querySelectorAll(".select-one input").length;
    this.counter.textContent = fill(M.selected, { count: numbers.format(chosen) });
    this.all.checked = boxes > 0 && chosen === boxes;
  };
  Bulk.prototype.fail = function (text, focus) {
    this.error.textContent = text;
    this.error.hidden = false;
    if (focus) { focus.setAttribute("aria-invalid", "true"); focus.focus(); }
  };
  Bulk.prototype.decide = function (decision) {
    var self = this;
    var ids = self.list.selected();
    var reason = self.reason.value.trim();
    self.error.hidden = true;
    self.reason.removeAttribute("aria-invalid");
    if (!ids.length) { self.fail(M.select_first, self.all); return; }
    if (self.options.reasonFor === decision && !reason) { self.fail(M.reason_required, self.reason); return; }
    self.yes.disabled = self.no.disabled = true;
    self.list.message.textContent = M.working;
    var results = [];
    var chunks = [];
    for (var i = 0; i < ids.length; i += BULK) { chunks.push(ids.slice(i, i + BULK)); }
    chunks.reduce(function (done, chunk) {
      return done.then(function () {
        return request("POST", self.options.path, self.options.body(chunk, decision, reason)).then(function (r) {
          if (missing(r)) { throw new Error("missing"); }
          if (r.status !== 200) { throw new Error(String(r.status)); }
          results = results.concat(r.body.results || []);
        });
      });
    }, Promise.resolve()).then(function () {
      var field = self.options.idField;
      self.list.remove(results.filter(function (r) { return self.options.settled.indexOf(r.result) >= 0; })
        .map(function (r) { return r[field]; }));
      self.reason.value = "";
      self.list.message.textContent = fill(M.bulk_done, { summary: summarise(results, "result") });
      status.textContent = self.list.message.textContent;
    }).catch(function (error) {
      if (error.message === "missing") { notAvailable(self.list.message); } else { self.list.message.textContent = M.load_failed; }
    }).then(function () { self.yes.disabled = self.no.disabled = false; });
  };

  // ---- Reviews (guests the portal let in, awaiting their sponsors' answer) and blocked or deleted guests ----
  var names = {};
  function guestName(item, heading) {
    // The register holds ids; the name and address come from the sign-up that let the guest in.
    if (!item.signupId) { return; }
    var known = names[item.signupId] || request("GET", "/manage/signups/" + encodeURIComponent(item.signupId));
    names[item.signupId] = known;
    known.then(function (r) {
      if (r.status !== 200) { return; }
      heading.textContent = r.body.displayName + " <" + r.body.email + ">";
      var label = heading.parentNode && heading.parentNode.querySelector(".select-one label");
      if (label) { label.textContent = fill(M.select_item, { name: heading.textContent }); }
    });
  }
  function guestCard(item, list, restore) {
    var li = el("li", null, "request guest");
    li.setAttribute("data-id", item.userId);
    var heading = el("h3", item.userId);
    heading.id = "guest-heading-" + item.userId + (restore ? "-r" : "");
    heading.tabIndex = -1;
    li.setAttribute("aria-labelledby", heading.id);
    li.appendChild(heading);
    guestName(item, heading);
    if (list && list.bulk) { checkbox(li, item.userId, item.userId, list.bulk); }
    var dl = el("dl");
    row(dl, M.user_id, item.userId);
    row(dl, M.profile, item.profile);
    var state = row(dl, M.review_state, M.guest_states[item.state] || item.state);
    if (state) { state.className = "guest-state"; }
    row(dl, M.invited_at, item.invitedAt ? when(item.invitedAt) : null);
    row(dl, M.redeemed_at, item.redeemedAt ? when(item.redeemedAt) : M.not_redeemed);
    row(dl, M.last_reviewed, item.lastReviewedAt ? when(item.lastReviewedAt) : M.never);
    row(dl, M.review_due, item.reviewDueBy ? when(item.reviewDueBy) : null);
    li.appendChild(dl);
    if (restore) { restoreButton(li, item, heading); }
    return li;
  }
  function restoreNote(li, item) {
    var note = li.querySelector(".restorable") || li.appendChild(el("p", null, "restorable"));
    note.textContent = "";
    if (item.restorableUntil && new Date(item.restorableUntil) > new Date()) {
      var parts = M.restorable_until.split("%(when)s");
      note.appendChild(sentence([parts[0], when(item.restorableUntil), parts[1] || ""]));
      return true;
    }
    note.textContent = M.restore_gone;
    return false;
  }
  function restoreButton(li, item, heading) {
    if (item.state === "deleted" && !restoreNote(li, item)) { return; }
    if (!canApprove) { return; }
    var button = el("button", M.restore);
    button.type = "button";
    li.appendChild(button);
    var message = document.getElementById("guests-message");
    button.addEventListener("click", function () {
      button.disabled = true;
      request("POST", "/manage/guests/" + encodeURIComponent(item.userId) + "/restore", {}).then(function (r) {
        if (missing(r)) { notAvailable(message); return; }
        if (r.status === 409) {
          message.textContent = item.state === "deleted" ? M.restore_gone : M.result_busy;
          button.disabled = false;
          return;
        }
        if (r.status !== 200) { message.textContent = M.load_failed; button.disabled = false; return; }
        message.textContent = fill(M.restored, { name: heading.textContent });
        button.remove();
        var state = li.querySelector(".guest-state");
        if (state) { state.textContent = M.guest_states[r.body.state] || r.body.state; }
      });
    });
  }
  function loadGuests() {
    var form = document.getElementById("guests-filters");
    var ul = document.getElementById("guests-list");
    var message = document.getElementById("guests-message");
    function show() {
      var state = document.getElementById("guests-state").value;
      ul.textContent = "";
      message.textContent = M.working;
      request("GET", "/manage/guests" + query({ state: state })).then(function (r) {
        if (missing(r)) { notAvailable(message); return; }
        if (r.status !== 200) { message.textContent = M.load_failed; return; }
        r.body.items.forEach(function (item) { ul.appendChild(guestCard(item, null, true)); });
        message.textContent = r.body.items.length ? fill(M.shown, { count: numbers.format(r.body.items.length) })
          : M.guests_none;
      }).catch(function () { message.textContent = M.load_failed; });
    }
    form.addEventListener("submit", function (event) { event.preventDefault(); show(); });
    show();
  }

  // ---- Wiring ----
  function build() {
    var lists = {
      pending: { listId: "requests", fixed: { status: "pending_approval" },
        bulk: canApprove && { path: "/manage/decisions", yes: "approve", no: "deny", reasonFor: "deny", idField: "id",
          settled: ["approved", "denied", "already_decided", "not_found"],
          body: function (ids, decision, reason) { return { ids: ids, decision: decision, reason: reason }; } } },
      decisions: { listId: "decisions-list", keep: function (item) { return !!item.decision; } },
      failures: { listId: "failures-list" },
      conversions: { listId: "conversions-list", fixed: { kind: "conversion" } }
    };
    Object.keys(lists).forEach(function (name) {
      if (!document.getElementById("panel-" + name)) { return; }
      var options = lists[name];
      options.path = "/manage/signups";
      options.card = signupCard;
      var list = new List(name, options);
      loaders[name] = function () { list.reset(); };
    });
    if (document.getElementById("panel-reviews")) {
      var reviews = new List("reviews", {
        listId: "reviews-list", path: "/manage/reviews",
        card: function (item, list) { return guestCard(item, list, false); },
        bulk: canApprove && { path: "/manage/reviews/decisions", yes: "keep", no: "remove", idField: "userId",
          settled: ["kept", "removed", "not_pending", "not_found"],
          body: function (ids, decision, reason) {
            var body = { userIds: ids, decision: decision };
            if (reason) { body.reason = reason; }
            return body;
          } }
      });
      loaders.reviews = function () { reviews.reset(); loadGuests(); };
    }
    loaders.overview = function () {
      if (window.SignupConsole && window.SignupConsole.overview) { window.SignupConsole.overview(); }
    };
  }
  function start() {
    if (!tabs.length) { return; }
    consoleBox.hidden = false;
    var wanted = new URLSearchParams(window.location.search).get("tab");
    var first = tabs.filter(function (t) { return t.getAttribute("data-tab") === wanted; })[0] || tabs[0];
    select(first, false);
  }
  function askForKey() {
    keyForm.hidden = false;
    if (consoleBox) { consoleBox.hidden = true; }
    loaded = {};
    document.getElementById("function-key").focus();
  }
  // What overview.js needs from here.
  window.SignupConsole = { M: M, lang: lang, request: request, el: el, when: when, fill: fill, numbers: numbers,
    notAvailable: notAvailable, missing: missing };

  function init() {
    build();
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
        start();
      });
      if (key()) { start(); } else { askForKey(); }
    } else if (root.getAttribute("data-signed-in") !== "false") {
      start();
    }
  }
  // After overview.js (also deferred) has run.
  document.addEventListener("DOMContentLoaded", init);
})();
