// The sign-up form, better with JavaScript: inline validation, sending without a reload, then a status view
// that polls the status URL. Without JavaScript the form posts and the server answers with a page.
(function () {
  "use strict";
  var form = document.getElementById("signup-form");
  if (!form) { return; }
  var messages = JSON.parse(document.getElementById("messages").textContent);
  var summary = document.getElementById("error-summary");
  var summaryList = document.getElementById("error-summary-list");
  var button = document.getElementById("submit");
  var api = form.getAttribute("data-api");
  var EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

  function idFor(name) {
    if (name.indexOf("answers.") === 0) { return "answer-" + name.slice(8); }
    return name;
  }
  function setError(name, text) {
    var input = document.getElementById(idFor(name));
    var error = document.getElementById(idFor(name) + "-error");
    if (!input || !error) { return false; }
    error.textContent = text || "";
    error.hidden = !text;
    if (text) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
    input.closest(".field").classList.toggle("field--error", !!text);
    return true;
  }
  function showSummary(errors) {
    summaryList.textContent = "";
    errors.forEach(function (e) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "#" + idFor(e.name);
      a.textContent = e.text;
      a.addEventListener("click", function (event) {
        var target = document.getElementById(idFor(e.name));
        if (target) { event.preventDefault(); target.focus(); }
      });
      li.appendChild(a);
      summaryList.appendChild(li);
    });
    summary.hidden = errors.length === 0;
    if (errors.length) { summary.focus(); }
  }
  function visibleQuestions() {
    var email = form.elements.email.value.trim().toLowerCase();
    var domain = email.split("@")[1] || "";
    Array.prototype.forEach.call(form.querySelectorAll("fieldset.questions"), function (set) {
      var match = set.getAttribute("data-domains").split(" ").some(function (p) {
        return p.indexOf("*.") === 0 ? domain.slice(-(p.length - 1)) === p.slice(1) : domain === p;
      });
      set.hidden = !match;
      Array.prototype.forEach.call(set.querySelectorAll("input, textarea"), function (i) { i.disabled = !match; });
    });
  }
  function check(input) {
    var name = input.name;
    var value = input.type === "checkbox" ? input.checked : input.value.trim();
    if (input.disabled) { return null; }
    if (name === "email" && !EMAIL.test(value)) { return messages.field_email; }
    if (name === "displayName" && !value) { return messages.field_displayName; }
    if (name === "acceptTerms" && !value) { return messages.field_acceptTerms; }
    if (input.required && !value) { return messages.field_answer; }
    var max = input.getAttribute("maxlength");
    if (max && typeof value === "string" && value.length > Number(max)) { return messages.too_long.replace("%(count)s", max); }
    return null;
  }
  function validateAll() {
    var errors = [];
    Array.prototype.forEach.call(form.querySelectorAll("input[name]:not([type=hidden]):not(#website), textarea"), function (input) {
      var text = check(input);
      setError(input.name, text);
      if (text) { errors.push({ name: input.name, text: text }); }
    });
    return errors;
  }
  // Inline validation re-checks a field already marked wrong, as it is corrected. Errors first appear on
  // submit: a message appearing on blur would move the button under a pointer that is pressing it.
  var submitted = false;
  Array.prototype.forEach.call(form.querySelectorAll("input, textarea"), function (input) {
    function recheck() { if (submitted && input.getAttribute("aria-invalid")) { setError(input.name, check(input)); } }
    input.addEventListener("input", recheck);
    input.addEventListener("change", recheck);
    input.addEventListener("blur", function () { if (submitted) { setError(input.name, check(input)); } });
  });
  form.elements.email.addEventListener("input", visibleQuestions);
  visibleQuestions();

  function fieldMessage(name) {
    if (name === "email") { return messages.field_email; }
    if (name === "displayName") { return messages.field_displayName; }
    if (name === "acceptTerms") { return messages.field_acceptTerms; }
    if (name.indexOf("answers.") === 0) { return messages.field_answer; }
    return messages.field_generic;
  }
  function body() {
    var data = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled) { return; }
      if (el.type === "checkbox") { if (el.checked) { data[el.name] = true; } return; }
      if (el.value !== "") { data[el.name] = el.value; }
    });
    var answers = {};
    Object.keys(data).forEach(function (k) { if (k.indexOf("answers.") === 0) { answers[k.slice(8)] = data[k]; delete data[k]; } });
    if (Object.keys(answers).length) { data.answers = answers; }
    return data;
  }
  function statusText(status) { return messages["status_" + status] || messages.status_queued; }
  var FINAL = { invited: true, failed: true, denied: true, expired: true };
  function poll(url) {
    var message = document.getElementById("status-message");
    fetch(url, { headers: { Accept: "application/json" } }).then(function (r) { return r.json(); }).then(function (view) {
      var text = statusText(view.status);
      if (message.textContent !== text) { message.textContent = text; }
      if (!FINAL[view.status]) { setTimeout(function () { poll(url); }, 2000); }
    }).catch(function () { setTimeout(function () { poll(url); }, 4000); });
  }
  function showStatus(accepted) {
    form.hidden = true;
    summary.hidden = true;
    document.querySelector(".intro").hidden = true;
    var view = document.getElementById("status-view");
    view.hidden = false;
    document.getElementById("status-message").textContent = statusText(accepted.status);
    document.getElementById("status-reference").textContent = messages.reference.replace("%(id)s", accepted.id);
    document.getElementById("status-heading").focus();
    poll(accepted.statusUrl);
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submitted = true;
    var errors = validateAll();
    showSummary(errors);
    if (errors.length) { return; }
    button.disabled = true;
    button.textContent = messages.sending;
    fetch(api + "/signups", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body())
    }).then(function (response) {
      return response.json().then(function (data) { return { status: response.status, data: data }; });
    }).then(function (result) {
      if (result.status === 202) { showStatus(result.data); return; }
      var errs = [];
      if (result.data.errors) {
        Object.keys(result.data.errors).forEach(function (name) {
          var text = fieldMessage(name);
          if (setError(name, text)) { errs.push({ name: name, text: text }); }
        });
      }
      if (!errs.length) { errs.push({ name: "email", text: messages["problem_" + result.status] || messages.problem_400 }); }
      showSummary(errs);
    }).catch(function () {
      showSummary([{ name: "email", text: messages.problem_503 }]);
    }).then(function () {
      button.disabled = false;
      button.textContent = messages.send;
    });
  });
})();
