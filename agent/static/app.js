// The wall-screen dashboard: renders each cycle from the SSE stream; operator actions behind login.
import { applyLang, currentLang, fieldLabel, t } from "./i18n.js";
import { DASH, field, num, pct, secs, time, watts, wh } from "./format.js";
import { RollingChart } from "./chart.js";
import { api, authHeaders, session } from "./http.js";
import { openStream } from "./stream.js";

const $ = (id) => document.getElementById(id);
const STATE_ICON = { online: "✓", fault: "✕", offline: "?", maintenance: "⚒" };
const SEV_ICON = { critical: "✕", warning: "!", info: "i" };

let role = null; // "viewer" | "operator" | null
let last = null; // last LiveOut
let openCluster = null;
let armed = null; // the cluster action waiting for its confirming click
const chart = new RollingChart($("chart"));

function toast(msg, good) {
  const el = $("toast");
  el.textContent = msg;
  el.className = `toast ${good ? "good" : "bad"}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.add("hidden"), 5000);
}

// --- rendering ------------------------------------------------------------------------------
function setWire(id, w, forward) {
  const el = $(id);
  const on = w !== null && Math.abs(w) > 1000;
  el.classList.toggle("on", on);
  el.classList.toggle("rev", on && !forward);
}

function renderSite(s) {
  $("site-id").textContent = "";
  $("v-grid").textContent = watts(s.grid_w);
  $("v-pv").textContent = watts(s.pv_w);
  $("v-load").textContent = watts(s.load_w);
  $("v-bat").textContent = `${watts(s.battery_w)} · ${pct(s.soc_pct, 0)}`;
  $("v-grid-dir").textContent = s.grid_w === null ? "" : s.grid_w >= 0 ? `→ ${t("importing")}` : `← ${t("exporting")}`;
  const b = s.battery_w;
  $("v-bat-dir").textContent = b === null ? "" : Math.abs(b) < 1000 ? t("idle") : b > 0 ? `↑ ${t("discharging")}` : `↓ ${t("charging")}`;
  setWire("w-grid", s.grid_w, s.grid_w >= 0);
  setWire("w-pv", s.pv_w, true);
  setWire("w-load", s.load_w, true);
  setWire("w-bat", b, b < 0);
  $("v-soc").textContent = pct(s.soc_pct);
  $("v-energy").textContent = `${wh(s.energy_wh)} / ${wh(s.capacity_wh)}`;
  $("v-sp").textContent = watts(s.setpoint_w);
  $("v-online").textContent = `${s.clusters_online} / ${s.clusters_total}`;
  const mode = $("mode");
  // A bound above the mode (ramp support, reserve, ...) may set the power instead of the mode's own
  // controller: say so next to the mode, so "conservative" never reads as holding while it discharges.
  const acting = s.mode_bound ? ` · ${t("bound_acting")}: ${s.mode_bound}` : "";
  mode.textContent = `${t("mode")}: ${s.mode}${acting}${s.grid_up ? "" : " ⚠"}`;
  mode.title = `operator: ${s.operator_mode}${s.mode_bound ? ` · ${s.reason}` : ""}`;
  $("clock").textContent = time(s.t_wall);
  $("decided").textContent = s.decided_by;
  $("reason").textContent = s.reason;
  const gt = $("grid-target");  // PCS in grid-power (PCC) control regulate the grid to this themselves
  gt.classList.toggle("hidden", s.grid_target_w == null);
  if (s.grid_target_w != null) gt.textContent = `${t("grid_target")} ${watts(s.grid_target_w)} (${t("at")} ${watts(s.grid_ramp_w_per_s)}/s)`;
  const tb = $("bounds").tBodies[0];
  tb.replaceChildren(...s.bounds.map((bd) => {
    const tr = document.createElement("tr");
    if (bd.source === s.decided_by) tr.className = "active-bound";
    for (const txt of [bd.source, `${watts(bd.lo_w)} … ${watts(bd.hi_w)}`, bd.reason]) {
      const td = document.createElement("td"); td.textContent = txt; tr.append(td);
    }
    return tr;
  }));
}

function renderOperator(op) {
  const el = $("override");
  if (op.override_w !== null) {
    el.textContent = `${t("override_active")}: ${watts(op.override_w)} · ${t("expires_in")} ${secs(op.override_remaining_s)}`;
    el.classList.remove("hidden");
  } else el.classList.add("hidden");
  const f = $("f-reserve");
  if (document.activeElement?.form !== f) {
    f.kw.value = Math.round(op.reserve_load_w / 1000);
    f.min.value = op.reserve_minutes;
  }
  const fm = $("f-mode");
  if (document.activeElement?.form !== fm) fm.mode.value = op.mode;
}

function bar(id, w, scale) {
  $(id).style.width = w === null || !scale ? "0%" : `${Math.min(100, (100 * w) / scale)}%`;
}

function renderDemand(d) {
  const scale = Math.max(d.interval_avg_w ?? 0, d.month_peak_w ?? 0, d.target_w ?? 0) * 1.1;
  bar("d-now", d.interval_avg_w, scale);
  bar("d-peak", d.month_peak_w, scale);
  bar("d-target", d.target_w, scale);
  $("d-now-v").textContent = watts(d.interval_avg_w, 2);
  $("d-peak-v").textContent = watts(d.month_peak_w, 2);
  $("d-target-v").textContent = d.target_w === null ? DASH : watts(d.target_w, 2);
  const mark = $("d-target-mark");
  if (d.target_w !== null && scale) { mark.style.left = `${(100 * d.target_w) / scale}%`; mark.classList.remove("hidden"); }
  else mark.classList.add("hidden");
  $("d-now").parentElement.parentElement.classList.toggle("over", d.target_w !== null && d.interval_avg_w > d.target_w);
  const parts = [`${t("elapsed")} ${secs(d.interval_elapsed_s)} / ${secs(d.interval_s)}`];
  if (d.target_w === null) parts.push(t("no_target"));
  if (d.source === "observed" && d.since) parts.push(`${t("observed_since")} ${time(d.since)}`);
  if (d.target_reason) parts.push(d.target_reason);
  $("d-note").textContent = parts.join(" · ");
  chart.target = d.target_w;
}

function tile(c) {
  const el = document.createElement("div");
  el.className = `tile st-${c.status}`;
  el.tabIndex = 0;
  el.dataset.id = c.id;
  el.setAttribute("role", "button");
  const head = document.createElement("div"); head.className = "head";
  const name = document.createElement("span"); name.textContent = c.id;
  const st = document.createElement("span"); st.className = "state";
  st.textContent = `${STATE_ICON[c.status] ?? ""} ${t(`st_${c.status}`)}`;
  head.append(name, st);
  const soc = document.createElement("div"); soc.className = "soc";
  const fill = document.createElement("div"); fill.style.width = `${c.soc_pct ?? 0}%`; soc.append(fill);
  const l1 = line(`SoC`, pct(c.soc_pct)), l2 = line(t("power"), watts(c.power_w));
  // Both BMS limits on one line: ⇩ charge (left), ⇧ discharge (right); the tooltip names them.
  const l3 = line(`⇩ ${watts(c.max_charge_w)}`, `⇧ ${watts(c.max_discharge_w)}`);
  l3.title = `${t("limits")}: ⇩ ${t("charge")} / ⇧ ${t("discharge")}`;
  const l4 = line("T max", num(c.temp_max_c, "°C"));
  el.append(head, soc, l1, l2, l3, l4);
  if (c.quality !== "good" || c.alarms) {
    const badge = document.createElement("div"); badge.className = "badge";
    badge.textContent = [c.alarms ? `⚠ BMS 0x${c.alarms.toString(16)}` : "", c.quality !== "good" ? `⚠ ${c.quality}` : ""].join(" ").trim();
    el.append(badge);
  }
  el.onclick = () => showCluster(c.id);
  el.onkeydown = (e) => { if (e.key === "Enter") showCluster(c.id); };
  return el;
}

function line(k, v) {
  const d = document.createElement("div"); d.className = "line";
  const a = document.createElement("span"); a.textContent = k;
  const b = document.createElement("b"); b.textContent = v;
  d.append(a, b);
  return d;
}

function renderAlarms(list) {
  const n = $("alarm-count");
  n.textContent = list.length;
  n.classList.toggle("crit", list.some((a) => a.severity === "critical"));
  const ul = $("alarm-list");
  if (!list.length) { const li = document.createElement("li"); li.className = "muted"; li.textContent = t("no_alarms"); ul.replaceChildren(li); return; }
  ul.replaceChildren(...list.map((a) => {
    const li = document.createElement("li");
    const icon = document.createElement("span"); icon.className = `sev sev-${a.severity}`; icon.textContent = SEV_ICON[a.severity] ?? "!";
    const body = document.createElement("div");
    const msg = document.createElement("div"); msg.className = "msg"; msg.textContent = `${a.severity.toUpperCase()} · ${a.source}: ${a.title?.[currentLang()] ?? a.message}`;
    const meta = document.createElement("div"); meta.className = "meta";
    meta.textContent = `${a.title && a.message !== a.title.en ? `${a.message} · ` : ""}${a.code} · ${time(a.raised_at)}${a.acked_by ? ` · ${t("acked_by")} ${a.acked_by}` : ""}`;
    body.append(msg, meta);
    const act = document.createElement("span");
    if (role === "operator" && !a.acked_by) {
      const b = document.createElement("button"); b.className = "btn ghost"; b.textContent = t("ack");
      b.onclick = () => control(`/api/control/alarms/${encodeURIComponent(a.id)}/ack`, "POST");
      act.append(b);
    }
    li.append(icon, body, act);
    return li;
  }));
}

function render(live) {
  last = live;
  renderSite(live.site);
  renderDemand(live.demand);
  renderOperator(live.operator);
  renderAlarms(live.alarms);
  $("tiles").replaceChildren(...live.clusters.map(tile));
  $("cycle").textContent = `#${live.site.seq} · ${num(live.cycle_ms, "ms", 0)}`;
  chart.push({ t: Date.parse(live.site.t_wall) / 1000, load: live.site.load_w, grid: live.site.grid_w, bat: live.site.battery_w });
  if (openCluster) fillCluster(openCluster);
}

// --- cluster details ------------------------------------------------------------------------
function showCluster(id) {
  openCluster = id; armed = null;
  fillCluster(id);
  $("cluster-dlg").showModal();
}

function fillCluster(id) {
  const c = last?.clusters.find((x) => x.id === id);
  if (!c) return;
  $("cd-title").textContent = `${c.id} · ${STATE_ICON[c.status]} ${t(`st_${c.status}`)}`;
  const rows = [
    [t("status"), `${c.status}${c.trusted ? "" : " (not commanded)"}`], [t("quality"), c.quality], [t("age"), secs(c.age_s)],
    ["SoC", pct(c.soc_pct)], [t("soh"), pct(c.soh_pct)], [t("energy"), `${wh(c.energy_wh)} / ${wh(c.capacity_wh)}`],
    [t("power"), watts(c.power_w)], [t("share"), watts(c.setpoint_w)],
    [`${t("limits")} (${t("charge")} / ${t("discharge")})`, `${watts(c.max_charge_w)} / ${watts(c.max_discharge_w)}`],
    [t("voltage"), num(c.voltage_v, "V")], [t("current"), num(c.current_a, "A")],
    [t("cells"), `${num(c.cell_v_max, "V", 3)} / ${num(c.cell_v_min, "V", 3)}`],
    [t("spread"), c.cell_spread_v === null ? DASH : `${(c.cell_spread_v * 1000).toFixed(0)} mV`],
    [t("temps"), `${num(c.temp_max_c, "°C")} / ${num(c.temp_min_c, "°C")}`], [t("cycles"), num(c.cycles, "", 0)],
    [t("bms_alarms"), c.alarms ? `0x${c.alarms.toString(16)}` : "0"], [t("pcs"), c.pcs_id],
  ];
  $("cd-table").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = k;
    const b = document.createElement("td"); b.textContent = v;
    tr.append(a, b); return tr;
  }));
  const acts = $("cd-actions");
  if (role !== "operator") { acts.replaceChildren(); return; }
  const on = !c.maintenance;
  const btn = document.createElement("button");
  btn.id = "cd-maint";
  btn.className = on ? "btn warn" : "btn";
  const label = on ? t("maint_on") : t("maint_off");
  btn.textContent = armed === id ? `${t("confirm")}: ${label} (${c.id})` : label;
  btn.onclick = async () => {
    if (armed !== id) { armed = id; fillCluster(id); return; } // two steps: no isolation by a stray tap
    armed = null;
    await control(`/api/control/clusters/${encodeURIComponent(id)}/maintenance`, "POST", { on });
  };
  acts.replaceChildren(btn);
}

// --- control --------------------------------------------------------------------------------
async function control(path, method, body) {
  try {
    const r = await api(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    toast(`${t("done")}: ${path.replace("/api/control/", "")}`, true);
    if (last) { last.operator = r.operator; renderOperator(r.operator); }
    if (openCluster) fillCluster(openCluster);
  } catch (e) {
    toast(e.message, false);
  }
}

function wireForms() {
  $("f-mode").onsubmit = (e) => { e.preventDefault(); control("/api/control/mode", "POST", { mode: e.target.mode.value }); };
  $("f-override").onsubmit = (e) => {
    e.preventDefault();
    const f = e.target;
    control("/api/control/override", "POST", { setpoint_w: +f.kw.value * 1000, duration_s: +f.min.value * 60 });
  };
  $("clear-override").onclick = () => control("/api/control/override", "DELETE");
  $("f-reserve").onsubmit = (e) => {
    e.preventDefault();
    const f = e.target;
    control("/api/control/reserve", "POST", { reserve_load_w: +f.kw.value * 1000, reserve_minutes: +f.min.value });
  };
  $("cd-close").onclick = () => { $("cluster-dlg").close(); };
  $("cluster-dlg").onclose = () => { openCluster = null; armed = null; };
}

// --- login ----------------------------------------------------------------------------------
async function whoami() {
  try {
    const me = await api("/api/whoami");
    role = me.role;
    const u = $("user");
    u.textContent = me.role === "operator" ? `${me.name} · operator` : `${me.name} · ${t("viewer_only")}`;
    u.classList.toggle("hidden", me.name === "anonymous");
  } catch (e) {
    role = null;
    if (e.status === 401 && session.token) session.token = null;
    if (e.status === 401) { // reads are not open here: ask for a token straight away
      toast(t("read_token_needed"), false);
      if (!$("login-dlg").open) { $("login-err").textContent = ""; $("token").value = ""; $("login-dlg").showModal(); }
    }
  }
  $("ops").classList.toggle("hidden", role !== "operator");
  $("login-btn").textContent = session.token ? t("logout") : t("login");
  if (last) renderAlarms(last.alarms);
}

function wireLogin() {
  $("login-btn").onclick = () => {
    if (session.token) { session.token = null; whoami(); stream.restart(); return; }
    $("login-err").textContent = ""; $("token").value = "";
    $("login-dlg").showModal();
  };
  $("login-cancel").onclick = () => $("login-dlg").close();
  $("login-form").onsubmit = async (e) => {
    e.preventDefault();
    const candidate = $("token").value.trim();
    const r = await fetch("/api/whoami", { headers: { Authorization: `Bearer ${candidate}` } });
    if (!r.ok) { $("login-err").textContent = t("bad_token"); return; }
    session.token = candidate;
    $("login-dlg").close();
    await whoami();
    stream.restart();
  };
}

// --- slow read-outs (not per cycle) ---------------------------------------------------------
// Money read-outs (ledger, ROI): scalar fields as rows, a nested summary (e.g. "to date") as a
// sub-heading with its own rows; lists and fields shown elsewhere are left out, amounts carry the
// currency. (Printing nested JSON here once pushed the whole page wider than the screen.)
const MONEY = /savings|cost|value|capex|opex|npv|^low$|^high$|per_day|per_month|so_far/;
const SKIP = new Set(["label", "roi", "currency", "note", "status"]);

function kvRows(obj, currency, items) {
  for (const [k, v] of Object.entries(obj)) {
    if (SKIP.has(k) || Array.isArray(v)) continue;
    if (v !== null && typeof v === "object") {
      const h = document.createElement("div"); h.className = "na sub"; h.textContent = fieldLabel(k, k.replaceAll("_", " "));
      items.push(h);
      kvRows(v, currency, items);
      continue;
    }
    let [label, value] = field(k, v);
    if (typeof v === "number" && currency && MONEY.test(k)) value = `${value} ${currency}`;
    const a = document.createElement("span"); a.className = "k"; a.textContent = label;
    const b = document.createElement("span"); b.className = "v"; b.textContent = value;
    items.push(a, b);
  }
}

function kvList(el, obj, title, currency) {
  const h = document.createElement("div"); h.className = "na"; h.style.color = "var(--text)"; h.textContent = title;
  const items = [h];
  // The ROI says how it annualised (basis, range) and, until a day is counted, that it cannot yet:
  // its NPV / IRR / payback then read "—", never minus the whole capex.
  const est = obj.estimate;
  if (est && est.note) {
    const n = document.createElement("div");
    n.className = obj.status === "not_enough_data" ? "na unavail" : "na small";
    n.textContent = obj.status === "not_enough_data"
      ? `${t("roi_not_enough")} (${est.counted_h.toFixed(1)} h / 24 h)`
      : `${t("basis_" + est.basis)}: ${est.note}`;
    items.push(n);
  }
  kvRows(obj, currency ?? obj.currency, items);
  el.replaceChildren(...items);
}

async function refreshMoney() {
  let currency;
  for (const [path, id, title] of [["/api/savings", "savings", "savings"], ["/api/roi", "roi", "roi"]]) {
    const el = $(id);
    try {
      const body = await api(path);
      currency ??= body.currency;
      kvList(el, body, t(title), currency);
    }
    catch (e) {
      const d = document.createElement("div"); d.className = "na unavail";
      d.textContent = `${t(title)}: ${t("not_available")}`;
      const why = document.createElement("div"); why.className = "na small"; why.textContent = e.message;
      el.replaceChildren(d, why);
    }
  }
}

async function refreshRamp() {
  try {
    const r = await api("/api/ramp");
    $("ramp").textContent = r.samples
      ? `${t("smoothing")} ${pct(r.smoothing_pct, 0)} (${Math.round(r.window_s / 60)} min) · ${t("max_step")}: ${t("gpu_load")} ${watts(r.load_max_w_per_s)}/s, ${t("grid")} ${watts(r.grid_max_w_per_s)}/s · ${t("limit")} ${watts(r.limit_w_per_s)}/s`
      : "";
  } catch { /* shown next time */ }
}

async function loadHistory() {
  try { chart.replace(await api("/api/history?seconds=300")); } catch { /* the stream fills it */ }
}

// --- start ----------------------------------------------------------------------------------
function setConn(state) {
  const up = state === "up";
  $("conn").className = `pill ${up ? "conn-up" : "conn-down"}`;
  $("conn-text").textContent = up ? t("live") : t("reconnecting");
  if (up) loadHistory(); // fill the gap the outage left
}

$("lang").onclick = () => {
  applyLang(currentLang() === "en" ? "zh" : "en");
  $("lang").textContent = currentLang() === "en" ? "中文 ZH" : "EN";
  whoami();
  refreshMoney();
  refreshRamp();
  if (last) render(last);
};

applyLang();
$("lang").textContent = currentLang() === "en" ? "中文 ZH" : "EN";
wireForms();
wireLogin();
const stream = openStream("/api/stream", authHeaders, (ev, data) => { if (ev === "cycle") render(JSON.parse(data)); }, setConn);
whoami();
refreshMoney();
refreshRamp();
setInterval(refreshMoney, 30000);
setInterval(refreshRamp, 5000);
