// Cluster health view: the daily read-out of GET /api/health (agent/health), refreshed every minute.
// Display only: an isolation proposal is confirmed through the cluster's details (maintenance).
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
    ? recs.map((r) => `<li class="sev-warning"><b>${esc(r.proposal?.kind ?? "")}</b> ${esc(r.text)}</li>`).join("")
    : "<li class=\"muted\">every cluster tracks its peers</li>";
  const head = "<tr><th>cluster</th>" + COLS.map((c) => `<th>${c[1]}</th>`).join("") + "<th>EFC total</th></tr>";
  const rows = Object.entries(h.clusters || {}).map(([id, c]) => {
    const flagged = new Set(c.flagged || []);
    const cells = COLS.map(([k, , d]) => `<td class="${flagged.has(k) ? "err" : ""}">${f(c.latest?.[k], d)}</td>`).join("");
    return `<tr><td>${esc(id)}</td>${cells}<td>${f(c.efc_total, 1)}</td></tr>`;
  });
  $("health-table").innerHTML = head + rows.join("");
}

refresh();
setInterval(refresh, 60_000);
