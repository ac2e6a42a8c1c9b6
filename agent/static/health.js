// Cluster health view: the daily read-out of GET /api/health (agent/health), refreshed every minute
// and redrawn when the language changes. A proposal (derate or isolate) is applied only when a
// logged-in operator confirms it; the server checks the role and audits the command like any other.
import { api, session } from "./http.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const f = (x, d = 1) => (x === null || x === undefined ? "—" : Number(x).toFixed(d));
const COLS = [ // [read-out key, string key, decimals]
  ["cell_spread_mv", "h_spread", 1], ["resistance_mohm", "h_resistance", 1], ["capacity_pct", "h_capacity", 1],
  ["soh_pct", "h_soh", 1], ["temp_max_c", "h_tmax", 1], ["efc", "h_efc_day", 2],
];
let last = null; // the last read-out, or the error that stood for it: redrawn on a language change

async function refresh() {
  try {
    last = await api("/api/health");
  } catch (e) {
    last = e;
  }
  render(last);
}

function what(cmd) {
  return cmd.command === "derate"
    ? t("h_cap").replace("{c}", cmd.cluster_id).replace("{p}", cmd.max_power_pct)
    : t("h_isolate").replace("{c}", cmd.cluster_id);
}

function render(h) {
  if (h instanceof Error) {
    $("health-note").textContent = h.status === 503 ? t("h_not_running") : h.message;
    return;
  }
  const recs = h.recommendations || [];
  const operator = Boolean(session.token);
  $("health-note").textContent = h.days ? t("h_days").replace("{n}", h.days) : t("h_no_day");
  $("health-recs").innerHTML = recs.length
    ? recs.map((r, i) => {
        const cmd = r.proposal?.command;
        const btn = operator && cmd ? ` <button type="button" class="apply" data-i="${i}">${esc(t("apply"))}: ${esc(what(cmd))}</button>` : "";
        return `<li class="sev-warning"><b>${esc(r.proposal?.kind ?? "")}</b> ${esc(r.text)}${btn}</li>`;
      }).join("")
    : `<li class="muted">${esc(t("h_all_track"))}</li>`;
  for (const b of $("health-recs").querySelectorAll("button.apply")) {
    b.addEventListener("click", () => apply(recs[Number(b.dataset.i)].proposal.command));
  }
  const head = `<tr><th>${esc(t("h_cluster"))}</th>` + COLS.map((c) => `<th>${esc(t(c[1]))}</th>`).join("")
    + `<th>${esc(t("h_efc_total"))}</th></tr>`;
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

async function apply(cmd) {
  const req = request(cmd);
  if (!req) return;
  if (!window.confirm(`${t("apply")}: ${what(cmd)}?`)) return;
  try {
    await api(req[0], { method: "POST", body: JSON.stringify(req[1]) });
    $("health-note").textContent = `${t("h_applied")}: ${what(cmd)}`;
  } catch (e) {
    $("health-note").textContent = `${t("h_refused")}: ${e.message}`;
  }
}

document.addEventListener("ems-lang", () => { if (last) render(last); });
refresh();
setInterval(refresh, 60_000);
