// The fleet page: every site's power flow, SoC, alarms and savings from GET /api/fleet, and the
// fleet's sum on top; each site links to its own dashboard. Polled (the fleet is a summary: a
// few seconds' delay is fine, and one request serves every site).
import { applyLang, currentLang, t } from "./i18n.js";
import { DASH, pct, secs, watts, wh } from "./format.js";
import { api, session } from "./http.js";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let last = null;
let connUp = null; // null until the first poll answered or failed

// Amounts per currency, never added across currencies: {"CNY": 1234.5} -> "1,234.50 CNY".
export function money(byCurrency) {
  const parts = Object.entries(byCurrency || {}).map(
    ([cur, v]) => `${v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })} ${cur}`);
  return parts.length ? parts.join(" · ") : DASH;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function alarms(n, worst) {
  const td = cell(n === null || n === undefined ? DASH : String(n), "num c-alarms");
  if (worst && n > 0) { td.classList.add(`sev-${worst}`); td.title = worst; }
  return td;
}

// One SVG bar: how the online sites' load is carried (grid import, battery discharge, PV).
function flowBar(sum) {
  const svg = $("s-flow");
  svg.replaceChildren();
  const parts = [["grid_w", "var(--sky)"], ["battery_w", "var(--green)"], ["pv_w", "var(--yellow)"]];
  const total = parts.reduce((a, [k]) => a + Math.max(0, sum[k] ?? 0), 0);
  if (!(total > 0)) return;
  let x = 0;
  for (const [k, colour] of parts) {
    const w = (600 * Math.max(0, sum[k] ?? 0)) / total;
    if (!(w > 0)) continue;
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({ x, y: 0, width: w, height: 28, fill: colour }).forEach(([a, v]) => r.setAttribute(a, v));
    const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
    tip.textContent = `${k}: ${watts(sum[k])}`;
    r.append(tip);
    svg.append(r);
    x += w;
  }
}

function render(body) {
  last = body;
  const s = body.sum;
  $("s-grid").textContent = watts(s.grid_w);
  $("s-load").textContent = watts(s.load_w);
  $("s-bat").textContent = watts(s.battery_w);
  $("s-pv").textContent = watts(s.pv_w);
  $("s-soc").textContent = pct(s.soc_pct);
  $("s-energy").textContent = wh(s.energy_wh);
  $("s-sites").textContent = `${s.in_sum} / ${s.sites}`;
  $("s-alarms").textContent = String(s.alarms_active);
  $("s-alarms").className = s.alarms_worst && s.alarms_active > 0 ? `sev-${s.alarms_worst}` : "";
  $("s-savings").textContent = money(s.savings_to_date);
  const unmeasured = Object.entries(s.unmeasured || {}).map(([k, ids]) => `${k}: ${ids.join(", ")}`);
  $("s-note").textContent = unmeasured.length ? `${t("unmeasured")}: ${unmeasured.join("; ")}` : "";
  flowBar(s);
  const b = body.broker;
  $("broker").textContent = `MQTT ${b.address}${b.connected === false ? ` — ${t("reconnecting")}` : ""}`;

  const rows = body.sites.map((v) => {
    const tr = document.createElement("tr");
    tr.dataset.site = v.id;
    tr.className = `st-${v.status}`;
    const name = cell("", "c-name");
    if (v.url) {
      const a = document.createElement("a");
      a.href = v.url;
      a.textContent = v.name;
      name.append(a);
    } else name.textContent = v.name;
    const st = cell("", "c-status");
    const pill = document.createElement("span");
    pill.className = `st-pill ${v.status}`;
    pill.textContent = t(`fs_${v.status}`);
    st.append(pill);
    const sv = v.savings && v.savings.net_savings !== null ? { [v.savings.currency]: v.savings.net_savings } : null;
    const err = cell(v.errors.join("; "), "err c-errors");
    tr.append(
      name, st, cell(secs(v.age_s), "num c-age"),
      cell(watts(v.grid_w), "num c-grid"), cell(watts(v.load_w), "num c-load"),
      cell(watts(v.battery_w), "num c-bat"), cell(watts(v.pv_w), "num c-pv"),
      cell(pct(v.soc_pct), "num c-soc"), cell(wh(v.energy_wh), "num c-energy"),
      alarms(v.alarms_active, v.alarms_worst), cell(sv ? money(sv) : DASH, "num c-savings"), err,
    );
    return tr;
  });
  $("sites").tBodies[0].replaceChildren(...rows);
  // when the page first showed the fleet's data, for load-time measurements (bench/fleet_bench.py)
  if (!performance.getEntriesByName("fleet-data-shown").length) performance.mark("fleet-data-shown");
}

function setConn(up) {
  connUp = up;
  $("conn").className = `pill ${up ? "conn-up" : "conn-down"}`;
  $("conn-text").textContent = t(up ? "live" : "reconnecting");
}

async function poll() {
  try {
    render(await api("/api/fleet"));
    setConn(true);
    $("login").classList.add("hidden");
  } catch (e) {
    setConn(false);
    if (e.status === 401) $("login").classList.remove("hidden");
  }
  $("clock").textContent = new Date().toLocaleTimeString();
}

$("login").onsubmit = async (ev) => {
  ev.preventDefault();
  session.token = $("token").value.trim();
  $("token").value = "";
  $("login-err").textContent = "";
  try { render(await api("/api/fleet")); $("login").classList.add("hidden"); setConn(true); }
  catch (e) { session.token = null; $("login-err").textContent = e.status === 401 ? t("bad_token") : e.message; }
};

$("lang").onclick = () => {
  applyLang(currentLang() === "en" ? "zh" : "en");
  $("lang").textContent = currentLang() === "en" ? "中文 ZH" : "EN";
};
// applyLang rewrote every data-i18n text (the connection pill says "connecting" again): redraw
document.addEventListener("ems-lang", () => { if (last) render(last); if (connUp !== null) setConn(connUp); });
applyLang();
$("lang").textContent = currentLang() === "en" ? "中文 ZH" : "EN";
poll();
setInterval(poll, POLL_MS);
