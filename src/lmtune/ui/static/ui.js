// lmtune ui: table sorting, run selection for Compare, and a running training's live log.
"use strict";

function cellValue(row, index, type) {
  const cell = row.children[index];
  const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
  if (type === "text") return raw.toLowerCase();
  const number = parseFloat(raw);
  return raw === "" || raw === "-" ? null : (isNaN(number) ? raw.toLowerCase() : number);
}

function compareValues(a, b) {
  if (a === null) return b === null ? 0 : 1;  // empty cells last, either way
  if (b === null) return -1;
  if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === "number" ? -1 : 1;
}

function makeSortable(table) {
  table.querySelectorAll("thead th[data-type]").forEach((th, _) => {
    th.classList.add("sort");
    th.addEventListener("click", () => {
      const index = Array.from(th.parentNode.children).indexOf(th);
      // numbers sort best-first (descending) on the first click, text ascending
      const descending = th.dataset.dir ? th.dataset.dir === "asc" : th.dataset.type !== "text";
      table.querySelectorAll("thead th").forEach((h) => { delete h.dataset.dir; });
      th.dataset.dir = descending ? "desc" : "asc";
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((x, y) => {
        const a = cellValue(x, index, th.dataset.type), b = cellValue(y, index, th.dataset.type);
        if (a === null || b === null) return compareValues(a, b);
        return descending ? compareValues(b, a) : compareValues(a, b);
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
}

function setupCompare() {
  const button = document.getElementById("compare");
  if (!button) return;
  const picked = () => Array.from(document.querySelectorAll("#runs input[name=run]:checked")).map((c) => c.value);
  document.querySelectorAll("#runs input[name=run]").forEach((box) => {
    box.addEventListener("change", () => {
      const n = picked().length;
      button.disabled = n < 2;
      button.textContent = n ? `Compare selected (${n})` : "Compare selected";
    });
  });
  button.addEventListener("click", () => {
    const query = picked().map((id) => "run=" + encodeURIComponent(id)).join("&");
    window.location.href = "/compare?" + query;
  });
}

function appendLogRow(body, row) {
  const tr = document.createElement("tr");
  tr.className = row.kind + (row.best ? " best" : "") + " live";
  for (const value of [row.kind, row.step, row.loss, row.metric]) {
    const td = document.createElement("td");
    td.textContent = value;
    if (value !== row.kind) td.className = "num";
    tr.appendChild(td);
  }
  body.appendChild(tr);
}

// A running training's page follows train_log.jsonl: new rows are appended, the curves redrawn.
function followLog() {
  const table = document.getElementById("log");
  if (!table || table.dataset.status !== "running") return;
  const poll = async () => {
    try {
      const answer = await fetch(`/api/runs/${encodeURIComponent(table.dataset.run)}/log?offset=${table.dataset.offset}`,
                                 { credentials: "same-origin" });
      if (!answer.ok) throw new Error(answer.status);
      const update = await answer.json();
      update.rows.forEach((row) => appendLogRow(table.tBodies[0], row));
      table.dataset.offset = update.offset;
      if (update.curves) document.getElementById("curves").innerHTML = update.curves;
      const best = document.getElementById("best-value");
      if (best && update.value !== "-") best.textContent = update.value;
      const status = document.getElementById("run-status");
      status.textContent = update.status;
      status.className = "status " + update.status;
      table.dataset.status = update.status;
      if (update.rows.length) table.parentNode.scrollTop = table.parentNode.scrollHeight;
    } catch (error) {
      console.warn("lmtune ui: log poll failed", error);
    }
    if (table.dataset.status === "running") window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  setupCompare();
  followLog();
});
