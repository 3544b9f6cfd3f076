// VLM providers: spend today, what the cost governor saved, circuit breakers and budgets.
// Polled (spend moves with every call, on every node, so events would not cover it).
"use strict";

(() => {
  const POLL_MS = 5000;
  const section = document.querySelector("#providers");
  if (!section) return;

  const fmtCost = (v) => (v ? v.toFixed(4).replace(/\.?0+$/, "") : "0");
  const fmtInt = (v) => Number(v || 0).toLocaleString("en");

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function renderProviders(providers) {
    const body = section.querySelector("#provider-list");
    body.replaceChildren();
    for (const [name, p] of Object.entries(providers)) {
      const row = body.insertRow();
      row.dataset.provider = name;
      cell(row, name);
      const circuit = cell(row, "").appendChild(document.createElement("span"));
      circuit.className = `badge circuit ${p.circuit}`;
      circuit.textContent = p.circuit.replace("_", "-");
      const spend = p.spend || {};
      cell(row, fmtInt(spend.calls_today), "num calls");
      cell(row, fmtInt(spend.tokens_today), "num tokens");
      cell(row, fmtCost(spend.cost_today), "num cost");
      const skipped = p.savings.clips_skipped;
      const skips = Object.entries(skipped).filter(([, n]) => n).map(([why, n]) => `${n} ${why}`);
      cell(row, skips.join(", ") || "none", "skipped");
      cell(row, `${fmtInt(p.savings.tokens_est)} tokens · ${fmtCost(p.savings.cost_est)}`,
        "saved");
    }
  }

  function limitText(limits, spend) {
    const parts = [];
    if (limits.calls_per_minute != null)
      parts.push(`${spend.calls_this_minute}/${limits.calls_per_minute} calls/min`);
    if (limits.tokens_per_hour != null)
      parts.push(`${fmtInt(spend.tokens_this_hour)}/${fmtInt(limits.tokens_per_hour)} tokens/h`);
    if (limits.cost_per_day != null)
      parts.push(`${fmtCost(spend.cost_today)}/${fmtCost(limits.cost_per_day)} cost/day`);
    return parts.join(" · ");
  }

  function renderBudgets(b) {
    const lines = [];
    const all = limitText(b.limits, b.spend);
    if (all) lines.push(`All calls: ${all}`);
    for (const [sid, s] of Object.entries(b.streams)) {
      const text = limitText(s.limits, s.spend);
      if (s.budget_skip_reason) lines.push(`${sid}: skipping clips: ${s.budget_skip_reason}`);
      else if (text) lines.push(`${sid}: ${text}`);
    }
    const list = section.querySelector("#budget-list");
    list.replaceChildren(...lines.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    section.querySelector(".shared").textContent =
      b.shared ? "counted across every node" : "counted on this node";
  }

  async function load() {
    try {
      const [providers, budgets] = await Promise.all(
        ["/api/providers", "/api/budgets"].map(async (path) => {
          const resp = await fetch(path);
          if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
          return resp.json();
        }));
      section.hidden = Object.keys(providers).length === 0;
      renderProviders(providers);
      renderBudgets(budgets);
    } catch (err) { /* shown stale; tried again on the next tick */ }
  }

  load();
  setInterval(load, POLL_MS);
})();
