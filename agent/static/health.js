// Cluster health view: the daily read-out of GET /api/health (agent/health), refreshed every minute.
// A proposal (derate or isolate) is applied only when a logged-in operator confirms it; the
// server checks the role and audits the command like any other.
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const f = (x, d = 1) => (x === null || x === undefined ? "—" : Number(x).toFixed(d));
const COLS = [
  ["cell_spread_mv", "spread mV", 1], ["resistance_mohm", "R mΩ", 1], ["capacity_pct", "capacity %", 1],
  ["soh_pct", "SoH %", 1], ["temp_max_c", "Tmax °C", 1], ["efc", "EFC/day", 2],
];

async function refresh() {
  const token = sessionStorage.getItem("ems-token");
  let h;
  try {
    const r = await fetch("/api/health", { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (!r.ok) { $("health-note").textContent = r.status === 503 ? "health tracking not running" : `HTTP ${r.status}`; return; }
    h = await r.json();
  } catch { return; }
  const recs = h.recommendations || [];
  $("health-note").textContent = h.days ? `${h.days} days of history` : "no full day yet";
  $("health-recs").innerHTML = recs.length
    ? recs.map((r, i) => {
        const cmd = r.proposal?.command;
        const btn = token && cmd ? ` <button type="button" class="apply" data-i="${i}">apply ${esc(r.proposal.kind)}</button>` : "";
        return `<li class="sev-warning"><b>${esc(r.proposal?.kind ?? "")}</b> ${esc(r.text)}${btn}</li>`;
      }).join("")
    : "<li class=\"muted\">every cluster tracks its peers</li>";
  for (const b of $("health-recs").querySelectorAll("button.apply")) {
    b.addEventListener("click", () => apply(recs[Number(b.dataset.i)].proposal.command, token));
  }
  const head = "<tr><th>cluster</th>" + COLS.map((c) => `<th>${c[1]}</th>`).join("") + "<th>EFC total</th></tr>";
  const rows = Object.entries(h.clusters || {}).map(([id, c]) => {
    const flagged = new Set(c.flagged || []);
    const cells = COLS.map(([k, , d]) => `<td class="${flagged.has(k) ? "err" : ""}">${f(c.latest?.[k], d)}</td>`).join("");
    return `<tr><td>${esc(id)}</td>${cells}<td>${f(c.efc_total, 1)}</td></tr>`;
  });
  $("health-table").innerHTML = head + rows.join("");
}

// The proposal's command -> the control endpoint that carries it.
function request(cmd) {
  const c = encodeURIComponent(cmd.cluster_id);
  if (cmd.command === "derate") return [`/api/control/clusters/${c}/derate`, { max_power_pct: cmd.max_power_pct }];
  if (cmd.command === "maintenance") return [`/api/control/clusters/${c}/maintenance`, { on: cmd.on }];
  return null;
}

async function apply(cmd, token) {
  const req = request(cmd);
  if (!req) return;
  const what = cmd.command === "derate" ? `cap ${cmd.cluster_id} (and its PCS) at ${cmd.max_power_pct} %` : `isolate ${cmd.cluster_id}`;
  if (!window.confirm(`Apply: ${what}?`)) return;
  const r = await fetch(req[0], {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(req[1]),
  });
  $("health-note").textContent = r.ok ? `applied: ${what}` : `refused (HTTP ${r.status})`;
}

refresh();
setInterval(refresh, 60_000);
