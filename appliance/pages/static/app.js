// appliance web pages: the pages work without this script; it only makes them nicer.
// Live conditions on service forms, the example button, the service filter, a job page
// that follows its job, and "My jobs" (kept in this browser's local storage).
"use strict";

(function () {
  var STORE = "appliance.jobs";
  var FINAL = ["REJECTED", "COMPLETED", "INTERRUPTED", "DELETED", "FAILED", "ERROR"];

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $$(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  // ---- the previous system's condition language, over the tree the server parsed ----
  function truthy(v) {
    if (Array.isArray(v)) return v.length > 0;
    return !(v === null || v === undefined || v === false || v === 0 || v === "");
  }
  function same(a, b) {
    if (a === null || a === undefined) return b === null || b === undefined;
    if (typeof a === "object" || typeof b === "object") return JSON.stringify(a) === JSON.stringify(b);
    if (typeof a === "boolean" || typeof b === "boolean") return a === b;
    return a === b;
  }
  function comparable(a, b) {
    return a !== null && b !== null && a !== undefined && b !== undefined &&
      typeof a === typeof b && (typeof a === "number" || typeof a === "string");
  }
  function arith(op, a, b) {
    if (a === null || b === null || a === undefined || b === undefined) return null;
    if (op === "+" && typeof a === "string" && typeof b === "string") return a + b;
    if (typeof a !== "number" || typeof b !== "number") return null;
    if (op === "+") return a + b;
    if (op === "-") return a - b;
    if (op === "*") return a * b;
    return b === 0 ? null : a / b;
  }
  function evaluate(node, vars) {
    if ("lit" in node) return node.lit;
    if ("var" in node) return vars.hasOwnProperty(node["var"]) ? vars[node["var"]] : null;
    var a = evaluate(node.args[0], vars);
    if (node.args.length === 1) {
      if (node.op === "not") return !truthy(a);
      if (node.op === "#") return (typeof a === "string" || Array.isArray(a)) ? a.length : 0;
      return typeof a === "number" ? -a : null;
    }
    var b = evaluate(node.args[1], vars);
    switch (node.op) {
      case "or": return truthy(a) || truthy(b);
      case "xor": return truthy(a) !== truthy(b);
      case "and": return truthy(a) && truthy(b);
      case "==": return same(a, b);
      case "!=": return !same(a, b);
      case "<": return comparable(a, b) && a < b;
      case ">": return comparable(a, b) && a > b;
      case "<=": return comparable(a, b) && a <= b;
      case ">=": return comparable(a, b) && a >= b;
      default: return arith(node.op, a, b);
    }
  }

  window.appliance = { evaluate: evaluate, truthy: truthy };  // for tests and the curious

  // ---- service forms ----
  function typed(kind, text) {
    text = text.trim();
    if (text === "") return null;
    if (kind === "integer") return /^[+-]?\d+$/.test(text) ? parseInt(text, 10) : null;
    if (kind === "decimal") { var n = Number(text); return isFinite(n) ? n : null; }
    if (kind === "flag") return /^(true|yes|on|1|y)$/i.test(text);
    return text;
  }
  function fieldValue(field) {
    var kind = field.dataset.kind, widget = field.dataset.widget, values = [];
    if (widget === "checkbox") {
      var box = $("input[type=checkbox]", field);
      return box.checked;
    }
    if (widget === "file") {
      var input = $("input[type=file]", field), paste = $("textarea", field);
      for (var i = 0; input && i < input.files.length; i++) values.push(input.files[i].name);
      if (paste && paste.value.trim()) values.push("pasted");
    } else if (widget === "checkboxes") {
      $$("input[type=checkbox]", field).forEach(function (b) { if (b.checked) values.push(b.value); });
    } else if (widget === "lines") {
      $("textarea", field).value.split("\n").forEach(function (line) {
        var v = typed(kind, line); if (v !== null) values.push(v);
      });
    } else {
      var v = typed(kind, $("input, select", field).value);
      if (v !== null) values.push(v);
    }
    if (values.length === 0) {
      return field.dataset.default !== undefined ? JSON.parse(field.dataset.default) : null;
    }
    return "array" in field.dataset ? values : values[values.length - 1];
  }
  function applyConditions(form) {
    var fields = $$(".field", form), values = {};
    fields.forEach(function (f) { values[f.dataset.param] = fieldValue(f); });
    fields.forEach(function (f) {
      if (!f.dataset.condition) return;
      var vars = Object.assign({}, values, { self: values[f.dataset.param] });
      var holds = truthy(evaluate(JSON.parse(f.dataset.condition), vars));
      f.hidden = !holds;
      $$("input, select, textarea, button", f).forEach(function (el) { el.disabled = !holds; });
    });
  }
  function setUpForm(form) {
    var update = function () { applyConditions(form); };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
    $$("button[data-example]", form).forEach(function (button) {
      var target = document.getElementById(button.dataset.example);
      var example = document.getElementById(button.dataset.example + "-example");
      button.hidden = false;
      button.addEventListener("click", function () {
        target.value = example.content ? example.content.textContent : example.textContent;
        target.focus();
        update();
      });
    });
    var problem = $(".field.has-error input, .field.has-error select, .field.has-error textarea", form);
    if (problem) problem.focus();
  }

  // ---- the service list's filter ----
  function setUpFilter(input) {
    var list = $(input.dataset.filter), none = $("#no-match");
    if (!list) return;
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean), shown = 0;
      $$(".card", list).forEach(function (card) {
        var match = words.every(function (w) { return card.dataset.text.indexOf(w) >= 0; });
        card.hidden = !match;
        if (match) shown++;
      });
      if (none) none.hidden = shown > 0;
    });
  }

  // ---- jobs kept in this browser ----
  function storedJobs() {
    try { return JSON.parse(localStorage.getItem(STORE) || "[]"); } catch (e) { return []; }
  }
  function remember(job) {
    try {
      var jobs = storedJobs().filter(function (j) { return j.id !== job.id; });
      var old = storedJobs().filter(function (j) { return j.id === job.id; })[0] || {};
      jobs.unshift(Object.assign(old, job));
      localStorage.setItem(STORE, JSON.stringify(jobs.slice(0, 200)));
    } catch (e) { /* storage full or refused: the page still works */ }
  }

  // ---- a job page that follows its job ----
  function setUpJob(box) {
    var id = box.dataset.job, delay = 1000, status = $("#job-status");
    remember({ id: id, service: box.dataset.service, serviceName: box.dataset.serviceName,
               submitted: box.dataset.submitted, status: box.dataset.status });
    if (box.dataset.finished === "true") return;
    var title = document.title, tell = $("#tell-me"), told = $("#tell-me-note"), notify = false;
    // The tab's title carries the state (seen from another tab); a browser notification
    // at the end if asked for. Neither polls more than the page already does.
    function titled(state) { document.title = "[" + state + "] " + title; }
    titled(box.dataset.status);
    if (tell && "Notification" in window && Notification.permission !== "denied") {
      tell.hidden = false;
      tell.addEventListener("click", function () {
        Notification.requestPermission().then(function (answer) {
          notify = answer === "granted";
          told.textContent = notify ? "You will be told when it ends (keep this page open)."
                                    : "Your browser will not show notifications; the tab's title shows the state.";
          tell.hidden = notify;
        });
      });
    }
    function ended(state) {
      titled(state);
      if (notify) { try { new Notification("Job " + id + ": " + state, { body: box.dataset.serviceName, tag: id }); } catch (e) { /* not allowed here */ } }
    }
    function set(id, text) { var el = document.getElementById(id); if (el) el.textContent = text || "—"; }
    function poll() {
      fetch("/api/jobs/" + id, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (job) {
          if (status.textContent !== job.status) {
            titled(job.status);
            status.textContent = job.status;
            status.className = "status status-" + job.status.toLowerCase();
          }
          var why = $("#job-waiting-row");
          if (job.waiting) { set("job-waiting", job.waiting.message + " (since " + job.waiting.since + ")"); why.hidden = false; }
          else if (why) { why.hidden = true; }
          set("job-started", job.startTime);
          set("job-completed", job.completionTime);
          if (job.exitCode !== null && job.exitCode !== undefined) {
            set("job-exit", String(job.exitCode));
            $("#job-exit-row").hidden = false;
          }
          if (job.error) { var e = $("#job-error"); e.textContent = job.error; e.hidden = false; }
          remember({ id: id, status: job.status });
          if (job.finished) { ended(job.status); return finish(); }
          fetch("/jobs/" + id + "/tail", { cache: "no-store" }).then(function (r) { return r.ok ? r.json() : null; })
            .then(function (t) { if (t) { $("#tail-stdout").textContent = t.stdout; $("#tail-stderr").textContent = t.stderr; } })
            .catch(function () {});
          delay = Math.min(delay * 1.3, 5000);
          setTimeout(poll, delay);
        })
        .catch(function () { delay = Math.min(delay * 2, 15000); setTimeout(poll, delay); });
    }
    function finish() {
      var cancel = $("#cancel-form"); if (cancel) cancel.hidden = true;
      if (tell) tell.hidden = true;
      box.dataset.finished = "true";
      fetch("/jobs/" + id + "/outputs", { cache: "no-store" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var old = $("#outputs");
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("outputs");
          if (old && fresh) old.replaceWith(document.importNode(fresh, true));
          $("#live").hidden = true;
        });
    }
    setTimeout(poll, 500);
  }

  // ---- "My jobs" ----
  function setUpMyJobs(table) {
    var body = $("tbody", table), empty = $("#my-jobs-empty"), clear = $("#my-jobs-clear");
    function draw() {
      var jobs = storedJobs();
      body.textContent = "";
      table.hidden = jobs.length === 0;
      empty.hidden = jobs.length > 0;
      clear.hidden = jobs.length === 0;
      jobs.forEach(function (job) {
        var row = document.createElement("tr"), cell = document.createElement("td"), link = document.createElement("a");
        link.href = "/jobs/" + encodeURIComponent(job.id);
        link.textContent = job.id;
        cell.appendChild(link);
        row.appendChild(cell);
        [job.serviceName || job.service || "", job.submitted || "", job.status || ""].forEach(function (text, i) {
          var td = document.createElement("td");
          td.textContent = text;
          if (i === 2) { td.className = "status status-" + String(text).toLowerCase(); td.dataset.job = job.id; }
          row.appendChild(td);
        });
        body.appendChild(row);
      });
    }
    draw();
    clear.addEventListener("click", function () { localStorage.removeItem(STORE); draw(); });
    storedJobs().forEach(function (job) {
      if (FINAL.indexOf(job.status) >= 0) return;
      fetch("/api/jobs/" + encodeURIComponent(job.id), { cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (fresh) { if (fresh) { remember({ id: job.id, status: fresh.status }); draw(); } })
        .catch(function () {});
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $$("form.job-form").forEach(setUpForm);
    $$("input[data-filter]").forEach(setUpFilter);
    var job = $("#job"); if (job) setUpJob(job);
    var mine = $("#my-jobs"); if (mine) setUpMyJobs(mine);
  });
})();
