// Live updates: the "Running now" table refreshes itself every 3 s from /api/running.
// Every page works without this script; it only saves a reload.
(function () {
  var table = document.querySelector("table[data-live]");
  if (!table || !window.fetch) return;
  var root = document.body.getAttribute("data-root") || "";
  function cell(text, link) {
    var td = document.createElement("td");
    if (link) { var a = document.createElement("a"); a.href = link; a.textContent = text; td.appendChild(a); }
    else { td.textContent = text; }
    return td;
  }
  function badge(status) {
    var td = document.createElement("td"), span = document.createElement("span");
    span.className = "badge " + status; span.textContent = status; td.appendChild(span); return td;
  }
  function refresh() {
    fetch(table.getAttribute("data-live"), {credentials: "same-origin"}).then(function (r) { return r.json(); })
      .then(function (data) {
        var body = document.createElement("tbody");
        data.running.forEach(function (run) {
          var tr = document.createElement("tr"); tr.className = run.status;
          tr.appendChild(cell(run.job, root + "/jobs/" + encodeURIComponent(run.job)));
          tr.appendChild(cell(run.tenant === null ? "" : String(run.tenant)));
          tr.appendChild(cell(run.host || "")); tr.appendChild(cell(String(run.pid)));
          tr.appendChild(cell(run.elapsed_s + " s")); tr.appendChild(badge(run.status));
          body.appendChild(tr);
        });
        if (!data.running.length) {
          var tr = document.createElement("tr"), td = cell("Nothing is running.");
          td.colSpan = 6; td.className = "muted"; tr.appendChild(td); body.appendChild(tr);
        }
        table.replaceChild(body, table.tBodies[0]);
        table.setAttribute("data-updated", new Date().toISOString());
      }).catch(function () {});
  }
  setInterval(refresh, 3000);
})();

// An invocation's page: progress, ETA and counts refresh every 2 s from /api/invocations/ID while it runs.
(function () {
  var facts = document.querySelector("[data-live-invocation]");
  if (!facts || !window.fetch) return;
  function set(id, text) { var el = document.getElementById(id); if (el) el.textContent = text; }
  function refresh() {
    fetch(facts.getAttribute("data-live-invocation"), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (inv) {
        set("inv-done", String(inv.done));
        set("inv-total", inv.total === null ? "unknown" : String(inv.total));
        set("inv-eta", inv.eta_s === null ? "–" : Math.round(inv.eta_s) + " s");
        set("inv-not-run", inv.not_run === null ? "unknown (the tenant scan has not finished)" : String(inv.not_run));
        var bar = document.getElementById("progress");
        if (bar && inv.progress_pct !== null) { bar.value = inv.progress_pct; bar.textContent = inv.progress_pct + "%"; }
        var status = document.querySelector("#inv-status .badge");
        if (status) { status.className = "badge " + inv.status; status.textContent = inv.status; }
        var counts = document.getElementById("inv-counts");
        if (counts) {
          counts.textContent = "";
          Object.keys(inv.counts).sort().forEach(function (k) {
            var span = document.createElement("span");
            span.className = "badge " + k; span.textContent = k + " " + inv.counts[k];
            counts.appendChild(span); counts.appendChild(document.createTextNode(" "));
          });
        }
        facts.setAttribute("data-updated", new Date().toISOString());
      }).catch(function () {});
  }
  setInterval(refresh, 2000);
})();
