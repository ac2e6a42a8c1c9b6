// Interface strings in English and Simplified Chinese. Elements carry data-i18n="key";
// code calls t(key). The choice is kept in localStorage.
const STRINGS = {
  en: {
    connecting: "connecting…", live: "live", reconnecting: "reconnecting…", login: "Operator login",
    logout: "Log out", power_flow: "Power flow", grid: "Grid", pv: "PV", battery: "Battery", gpu_load: "GPU load",
    soc: "SoC", stored: "Stored", setpoint: "Setpoint", online: "Online", active_constraint: "Active constraint",
    controller: "Controller", window: "Window", why: "Why", chart_title: "GPU load vs grid import vs battery",
    last_5min: "(last 5 min)", grid_import: "Grid import", battery_dis: "Battery (+ discharge)",
    demand_title: "15-minute demand", this_interval: "This interval", month_peak: "Month peak", target: "Target",
    savings_title: "Savings & ROI", loading: "loading…", alarms: "Alarms", clusters: "Battery clusters",
    click_details: "(click for details)", operator_actions: "Operator actions", mode: "Mode", apply: "Apply",
    override: "Override", clear: "Clear", reserve: "Backup reserve", cycle: "Cycle", cancel: "Cancel",
    sign_in: "Sign in", login_hint: "The token is kept for this browser tab only.",
    st_online: "ONLINE", st_fault: "FAULT", st_offline: "OFFLINE", st_maintenance: "MAINT",
    importing: "importing", exporting: "exporting", discharging: "discharging", charging: "charging", idle: "idle",
    grid_target: "PCS grid-power control: grid target", at: "at", bound_acting: "set by",
    health_title: "Cluster health", h_not_running: "health tracking not running", h_days: "{n} days of history",
    h_no_day: "no full day yet", h_all_track: "every cluster tracks its peers", h_cluster: "cluster",
    h_spread: "spread mV", h_resistance: "R mΩ", h_capacity: "capacity %", h_soh: "SoH %", h_tmax: "Tmax °C",
    h_efc_day: "EFC/day", h_efc_total: "EFC total", h_cap: "cap {c} (and its PCS) at {p} %", h_isolate: "isolate {c}",
    h_applied: "applied", h_refused: "refused",
    no_alarms: "No active alarms", ack: "Ack", acked_by: "acked by", not_available: "Not available",
    roi_not_enough: "Not enough data yet to annualise: less than a day counted",
    plan_title: "Dispatch plan (next 24 h)", plan_soc: "planned SoC", plan_cap: "grid import cap",
    plan_price: "energy price", plan_none: "No plan", plan_made: "solved at", plan_solve: "solve",
    basis_whole_months: "From whole billing months", basis_running_month: "From the running month (demand saving so far)",
    basis_not_enough_data: "Not enough data yet",
    savings: "Savings", roi: "ROI", elapsed: "elapsed", observed_since: "observed since", no_target: "no fixed target (economic)",
    maint_on: "Put into maintenance", maint_off: "Return to service", confirm: "Confirm", done: "Done",
    override_active: "Operator override", expires_in: "expires in", bad_token: "Token refused",
    read_token_needed: "This dashboard needs a token to read: log in.", viewer_only: "viewer (read only)",
    status: "Status", quality: "Quality", age: "Age", soh: "SoH", energy: "Energy", power: "Power", limits: "Limits",
    charge: "charge", discharge: "discharge", voltage: "Voltage", current: "Current", cells: "Cell V max/min",
    spread: "Cell spread", temps: "Temp max/min", cycles: "Cycles", bms_alarms: "BMS alarm bits", pcs: "PCS",
    share: "Setpoint share", smoothing: "smoothing", max_step: "max step", limit: "limit", over: "over target",
    smoothing_means: "how much smaller the grid import's second-to-second steps are than the GPU load's, summed"
      + " (100 % a flat grid, 0 % no better than the load, below 0 the battery adds swings)",
    fleet: "fleet", fleet_total: "Fleet total", online_sites_only: "(online sites)", sites_online: "Sites online",
    savings_to_date: "Savings to date", sites: "Sites", site: "Site", unmeasured: "not measured at",
    fs_online: "online", fs_stale: "stale", fs_offline: "offline", fs_degraded: "degraded", fs_missing: "never heard",
  },
  zh: {
    connecting: "连接中…", live: "实时", reconnecting: "重新连接中…", login: "运维登录", logout: "退出",
    power_flow: "功率流向", grid: "电网", pv: "光伏", battery: "储能", gpu_load: "GPU 负荷", soc: "SoC",
    stored: "储能量", setpoint: "设定值", online: "在线", active_constraint: "当前约束", controller: "控制器",
    window: "允许范围", why: "原因", chart_title: "GPU 负荷 / 电网取电 / 储能", last_5min: "(最近 5 分钟)",
    grid_import: "电网取电", battery_dis: "储能 (+ 放电)", demand_title: "15 分钟需量", this_interval: "本时段",
    month_peak: "本月峰值", target: "目标", savings_title: "节省与投资回报", loading: "加载中…", alarms: "告警",
    clusters: "电池簇", click_details: "(点击查看详情)", operator_actions: "运维操作", mode: "模式", apply: "执行",
    override: "手动设定", clear: "清除", reserve: "备用容量", cycle: "周期", cancel: "取消", sign_in: "登录",
    login_hint: "令牌仅保存在当前浏览器标签页。", st_online: "在线", st_fault: "故障", st_offline: "离线",
    st_maintenance: "检修", importing: "取电", exporting: "送电", discharging: "放电", charging: "充电", idle: "待机",
    grid_target: "PCS 并网点功率控制：电网目标", at: "爬坡", bound_acting: "生效约束",
    health_title: "电池簇健康", h_not_running: "健康跟踪未运行", h_days: "{n} 天历史", h_no_day: "尚无完整一天",
    h_all_track: "各簇与同组一致", h_cluster: "电池簇", h_spread: "压差 mV", h_resistance: "内阻 mΩ",
    h_capacity: "容量 %", h_soh: "SoH %", h_tmax: "最高温度 °C", h_efc_day: "等效循环/天", h_efc_total: "等效循环累计",
    h_cap: "将 {c}（及其 PCS）限制在 {p} %", h_isolate: "隔离 {c}", h_applied: "已执行", h_refused: "被拒绝",
    no_alarms: "无活动告警", ack: "确认", acked_by: "确认人", not_available: "暂不可用", savings: "节省", roi: "投资回报",
    roi_not_enough: "数据不足，暂无法年化：计入时长不足一天", basis_whole_months: "按完整计费月估算",
    plan_title: "调度计划（未来 24 小时）", plan_soc: "计划 SoC", plan_cap: "电网取电上限", plan_price: "电价",
    plan_none: "无计划", plan_made: "求解于", plan_solve: "求解耗时",
    basis_running_month: "按当前计费月估算（需量节省为截至目前）", basis_not_enough_data: "数据不足",
    elapsed: "已过", observed_since: "统计起始", no_target: "无固定目标 (经济优化)", maint_on: "转入检修",
    maint_off: "恢复运行", confirm: "确认", done: "完成", override_active: "手动设定生效", expires_in: "剩余",
    bad_token: "令牌无效", read_token_needed: "查看需要令牌：请登录。", viewer_only: "只读用户", status: "状态",
    quality: "数据质量", age: "数据时效", soh: "SoH", energy: "能量", power: "功率", limits: "限值", charge: "充电",
    discharge: "放电", voltage: "电压", current: "电流", cells: "单体电压 高/低", spread: "单体压差",
    temps: "温度 高/低", cycles: "循环次数", bms_alarms: "BMS 告警位", pcs: "PCS", share: "分配功率",
    smoothing: "平滑度", max_step: "最大阶跃", limit: "限值", over: "超过目标",
    smoothing_means: "电网取电逐秒变化量之和比 GPU 负荷的小多少 (100 % 电网平稳，0 % 与负荷相同，低于 0 储能加剧波动)",
    fleet: "多站点总览", fleet_total: "全部站点合计", online_sites_only: "(在线站点)", sites_online: "在线站点",
    savings_to_date: "累计节省", sites: "站点", site: "站点", unmeasured: "未测量",
    fs_online: "在线", fs_stale: "数据过期", fs_offline: "离线", fs_degraded: "数据异常", fs_missing: "从未上报",
  },
};

// Labels of provider read-outs (savings ledger, ROI) by field key, without the unit suffix. English
// labels are the keys in words (format.js `field`); only other languages need a table.
const FIELDS = {
  zh: {
    tariff: "电价", savings_to_date: "累计节省", to_date: "累计", label: "期间", net_savings: "净节省",
    energy_savings: "电量电费节省", demand_savings: "需量电费节省", degradation_cost: "电池损耗成本",
    outage_value: "停电保障价值", discharge: "放电量", charge: "充电量", counted: "计入时长", excluded: "排除时长",
    intervals: "需量区间数", excluded_intervals: "排除区间数", roi: "投资回报",
    capex: "投资", realized_savings: "已实现节省", days: "天数", opex_to_date: "累计运维费用", recovered: "已回收",
    annual_savings: "年节省", simple_payback: "静态回收期", remaining_payback: "剩余回收期", npv: "净现值",
    irr: "内部收益率", trailing_days: "统计天数", currency: "货币",
    estimate: "年度估算", basis: "估算依据", low: "下限", high: "上限", time_rate_per_day: "每日电量节省",
    demand_per_month: "每月需量节省", demand_so_far_low: "本月需量节省下限", demand_so_far_high: "本月需量节省上限",
    uncovered: "缺数时长", lost: "丢失时长", months: "计费月",
  },
};

let lang = localStorage.getItem("ems-lang") === "zh" ? "zh" : "en";

// A read-out field's label: the table's in this language, else `fallback` (the key in words).
export function fieldLabel(key, fallback) {
  return FIELDS[lang]?.[key] ?? fallback;
}

export function t(key) {
  return STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
}

export function currentLang() { return lang; }

export function applyLang(next) {
  if (next) { lang = next; localStorage.setItem("ems-lang", lang); }
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  document.dispatchEvent(new Event("ems-lang")); // views drawn from data redraw themselves
}
