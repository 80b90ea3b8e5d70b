// The console's overview: GET /api/manage/stats drawn as inline SVG (geometry in attributes, colours from
// site.css classes: the page's CSP allows no inline style), each chart with a text equivalent (its aria-label
// and a table). Numbers, dates and durations in the page's language (Intl); days are calendar days (UTC).
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 640;

  function overview() {
    var C = window.SignupConsole;
    var M = C.M;
    var el = C.el;
    var body = document.getElementById("overview-body");
    var message = document.getElementById("overview-message");
    var percent = new Intl.NumberFormat(C.lang, { style: "percent", maximumFractionDigits: 1 });
    var dayShort = new Intl.DateTimeFormat(C.lang, { month: "short", day: "numeric", timeZone: "UTC" });
    var dayLong = new Intl.DateTimeFormat(C.lang, { dateStyle: "medium", timeZone: "UTC" });
    var seq = 0;

    function n(value) { return C.numbers.format(value || 0); }
    function day(date, long) { return (long ? dayLong : dayShort).format(new Date(date + "T00:00:00Z")); }
    function duration(seconds) {
      var units = [["second", 1, 120], ["minute", 60, 7200], ["hour", 3600, 172800], ["day", 86400, Infinity]];
      var unit = units.filter(function (u) { return seconds < u[2]; })[0];
      return new Intl.NumberFormat(C.lang, { style: "unit", unit: unit[0], unitDisplay: "short", maximumFractionDigits: 1 })
        .format(seconds / unit[1]);
    }
    function svg(tag, attrs, text) {
      var node = document.createElementNS(NS, tag);
      Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
      if (text !== undefined) { node.textContent = text; }
      return node;
    }
    function chart(height, label) {
      return svg("svg", { viewBox: "0 0 " + W + " " + height, "class": "chart", role: "img", "aria-label": label,
        focusable: "false" });
    }
    function block(title) {
      var section = el("section", null, "chart-block");
      var heading = el("h3", title);
      heading.id = "overview-" + (seq += 1);
      section.setAttribute("aria-labelledby", heading.id);
      section.appendChild(heading);
      body.appendChild(section);
      return section;
    }
    // A table, scrollable on its own when wider than a phone (focusable, so a keyboard can scroll it).
    function table(caption, head, rows, hidden) {
      var holder = el("div", null, "table-wrap");
      holder.tabIndex = 0;
      holder.setAttribute("role", "region");
      var t = el("table");
      var cap = el("caption", caption);
      cap.id = "overview-table-" + (seq += 1);
      holder.setAttribute("aria-labelledby", cap.id);
      t.appendChild(cap);
      var tr = t.appendChild(el("thead")).appendChild(el("tr"));
      head.forEach(function (h) { tr.appendChild(el("th", h)).setAttribute("scope", "col"); });
      var tbody = t.appendChild(el("tbody"));
      rows.forEach(function (cells) {
        var line = tbody.appendChild(el("tr"));
        cells.forEach(function (cell, i) {
          var c = line.appendChild(el(i ? "td" : "th", cell));
          if (!i) { c.setAttribute("scope", "row"); }
        });
      });
      holder.appendChild(t);
      if (!hidden) { return holder; }
      var details = el("details");
      details.appendChild(el("summary", M.as_table));
      details.appendChild(holder);
      return details;
    }
    // Horizontal bars: [label, value] pairs; the label column is as wide as a long label needs.
    function bars(rows, label, cls) {
      var top = 8, line = 28, left = 190, right = 60;
      var most = Math.max.apply(null, rows.map(function (r) { return r[1]; }).concat([1]));
      var figure = chart(top * 2 + line * rows.length, label);
      rows.forEach(function (r, i) {
        var y = top + i * line;
        var width = Math.max((W - left - right) * r[1] / most, r[1] ? 2 : 0);
        figure.appendChild(svg("text", { x: left - 8, y: y + line / 2 + 4, "text-anchor": "end", "class": "label" },
          r[0]));
        figure.appendChild(svg("rect", { x: left, y: y + 4, width: width, height: line - 8, "class": "bar " + cls }));
        figure.appendChild(svg("text", { x: left + width + 6, y: y + line / 2 + 4, "class": "value" }, n(r[1])));
      });
      return figure;
    }

    function attention(data) {
      var a = data.attention || {};
      var section = block(M.attention);
      var dl = section.appendChild(el("dl", null, "attention"));
      [["pendingReview", M.attention_pending], ["inDoubt", M.attention_doubt],
        ["conversionsToRerun", M.attention_rerun]].forEach(function (pair) {
        dl.appendChild(el("dt", pair[1]));
        dl.appendChild(el("dd", n(a[pair[0]]), a[pair[0]] ? "needs-action" : ""));
      });
    }
    function perDay(data) {
      var days = data.days || [];
      var order = M.status_order;
      var used = order.filter(function (s) { return days.some(function (d) { return (d.counts || {})[s]; }); });
      var totals = days.map(function (d) {
        return used.reduce(function (sum, s) { return sum + ((d.counts || {})[s] || 0); }, 0);
      });
      var all = totals.reduce(function (a, b) { return a + b; }, 0);
      var section = block(M.per_day);
      if (!days.length) { return; }
      var label = C.fill(M.per_day_label, { first: day(days[0].date, true), last: day(days[days.length - 1].date, true),
        total: n(all) });
      var H = 240, top = 12, bottom = 28, left = 44;
      var plot = H - top - bottom;
      var most = Math.max.apply(null, totals.concat([1]));
      var step = (W - left) / days.length;
      var figure = chart(H, label);
      figure.appendChild(svg("line", { x1: left, y1: top + plot, x2: W, y2: top + plot, "class": "axis" }));
      figure.appendChild(svg("text", { x: left - 6, y: top + 8, "text-anchor": "end", "class": "label" }, n(most)));
      figure.appendChild(svg("text", { x: left - 6, y: top + plot, "text-anchor": "end", "class": "label" }, n(0)));
      days.forEach(function (d, i) {
        var x = left + i * step + step * 0.1;
        var y = top + plot;
        used.forEach(function (s) {
          var count = (d.counts || {})[s] || 0;
          if (!count) { return; }
          var h = plot * count / most;
          y -= h;
          var rect = svg("rect", { x: x, y: y, width: step * 0.8, height: h, "class": "bar s-" + s });
          rect.appendChild(svg("title", {}, day(d.date, true) + " · " + M.statuses[s] + ": " + n(count)));
          figure.appendChild(rect);
        });
        if (i === 0 || i === days.length - 1 || i === Math.floor(days.length / 2)) {
          // The first and last labels are anchored inside the chart, so that neither is cut off.
          var anchor = i === 0 ? "start" : i === days.length - 1 ? "end" : "middle";
          var at = i === 0 ? x : i === days.length - 1 ? x + step * 0.8 : x + step * 0.4;
          figure.appendChild(svg("text", { x: at, y: H - 8, "text-anchor": anchor, "class": "label" },
            day(d.date, false)));
        }
      });
      section.appendChild(figure);
      var legend = section.appendChild(el("ul", null, "legend"));
      used.forEach(function (s) {
        var item = legend.appendChild(el("li"));
        var swatch = svg("svg", { viewBox: "0 0 10 10", width: 14, height: 14, "aria-hidden": "true", focusable: "false" });
        swatch.appendChild(svg("rect", { width: 10, height: 10, "class": "s-" + s }));
        item.appendChild(swatch);
        item.appendChild(document.createTextNode(" " + M.statuses[s]));
      });
      var rows = days.map(function (d, i) {
        return [day(d.date, true)].concat(used.map(function (s) { return n((d.counts || {})[s]); }), [n(totals[i])]);
      });
      section.appendChild(table(M.per_day, [M.date].concat(used.map(function (s) { return M.statuses[s]; }), [M.total]),
        rows, true));
    }
    function timeToInvite(data) {
      var t = data.timeToInvite || {};
      var section = block(M.tti);
      if (!t.count) { section.appendChild(el("p", M.tti_none)); return; }
      var summary = C.fill(M.tti_summary, { count: n(t.count), p50: duration(t.p50 || 0), p95: duration(t.p95 || 0) });
      section.appendChild(el("p", summary));
      var rows = (t.buckets || []).map(function (b) {
        var open = b.le === null || b.le === undefined || b.le === "+Inf" || !isFinite(b.le);
        return [open ? M.tti_more : C.fill(M.tti_bucket, { duration: duration(b.le) }), b.count || 0];
      });
      section.appendChild(bars(rows, M.tti + ". " + summary, "tti"));
      section.appendChild(table(M.tti, [M.tti, M.invitations], rows.map(function (r) { return [r[0], n(r[1])]; }), true));
    }
    function failures(data) {
      var list = data.failures || [];
      var section = block(M.failures);
      if (!list.length) { section.appendChild(el("p", M.failures_none)); return; }
      var label = M.failures + ": " + list.map(function (f) { return f.code + " " + n(f.count); }).join(", ");
      section.appendChild(bars(list.map(function (f) { return [f.code, f.count]; }), label, "failure"));
      section.appendChild(table(M.failures, [M.code, M.count, M.cause, M.fix], list.map(function (f) {
        return [f.code, n(f.count), f.cause || "", f.fix || ""];
      }), false));
    }
    function budget(data) {
      var b = data.budget;
      var section = block(M.budget);
      if (!b) { return; }
      var fraction = Math.min(Math.max(b.fraction || 0, 0), 1);
      var summary = C.fill(M.budget_summary, { used: n(b.used), limit: n(b.limit), window: duration(b.windowSeconds || 0),
        percent: percent.format(b.fraction || 0) });
      var figure = chart(36, summary);
      figure.appendChild(svg("rect", { x: 0, y: 6, width: W, height: 24, "class": "track" }));
      figure.appendChild(svg("rect", { x: 0, y: 6, width: W * fraction, height: 24,
        "class": "used" + (fraction >= 0.9 ? " high" : "") }));
      section.appendChild(figure);
      section.appendChild(el("p", summary));
    }

    message.textContent = M.working;
    body.textContent = "";
    C.request("GET", "/manage/stats?days=30").then(function (r) {
      if (C.missing(r)) { C.notAvailable(message); return; }
      if (r.status !== 200) { message.textContent = M.load_failed; return; }
      var generated = C.M.generated.split("%(when)s");
      message.textContent = "";
      if (r.body.generatedAt) {
        message.appendChild(document.createTextNode(generated[0]));
        message.appendChild(C.when(r.body.generatedAt));
        message.appendChild(document.createTextNode(generated[1] || ""));
      }
      attention(r.body);
      perDay(r.body);
      timeToInvite(r.body);
      failures(r.body);
      budget(r.body);
    }).catch(function () { message.textContent = M.load_failed; });
  }

  window.SignupConsole = window.SignupConsole || {};
  window.SignupConsole.overview = overview;
})();
