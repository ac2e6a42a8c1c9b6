// Numbers for people: every value carries its unit; unknown values show as "—", never 0.
import { fieldLabel } from "./i18n.js";
export const DASH = "—";

export function watts(w, digits) {
  if (w === null || w === undefined || !isFinite(w)) return DASH;
  const a = Math.abs(w);
  if (a >= 1e6) return `${(w / 1e6).toFixed(digits ?? 2)} MW`;
  if (a >= 1e3) return `${(w / 1e3).toFixed(digits ?? 0)} kW`;
  return `${w.toFixed(0)} W`;
}

export function wh(x) {
  if (x === null || x === undefined || !isFinite(x)) return DASH;
  const a = Math.abs(x);
  if (a >= 1e6) return `${(x / 1e6).toFixed(2)} MWh`;
  if (a >= 1e3) return `${(x / 1e3).toFixed(0)} kWh`;
  return `${x.toFixed(0)} Wh`;
}

export function pct(x, digits = 1) {
  return x === null || x === undefined || !isFinite(x) ? DASH : `${x.toFixed(digits)} %`;
}

export function num(x, unit, digits = 1) {
  return x === null || x === undefined || !isFinite(x) ? DASH : `${x.toFixed(digits)} ${unit}`;
}

export function secs(s) {
  if (s === null || s === undefined || !isFinite(s)) return DASH;
  if (s >= 3600) return `${(s / 3600).toFixed(1)} h`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${s.toFixed(1)} s`;
}

export function time(iso) {
  if (!iso) return DASH;
  // Site-local wall time as the agent sent it (HH:MM:SS of the ISO string, with its offset).
  const m = /T(\d\d:\d\d:\d\d)/.exec(iso);
  return m ? m[1] : iso;
}

// Labels for provider read-outs whose fields we do not know in advance: "discharge_kwh" ->
// "discharge" (or its translation, i18n.js) with the unit taken from the key's suffix.
const SUFFIX = [["_pct", " %"], ["_kwh", " kWh"], ["_wh", " Wh"], ["_kw", " kW"], ["_w", " W"], ["_years", " years"], ["_s", " s"]];
export function field(key, value) {
  let label = key, unit = "";
  for (const [suf, u] of SUFFIX) if (key.endsWith(suf)) { label = key.slice(0, -suf.length); unit = u; break; }
  label = fieldLabel(label, label.replaceAll("_", " "));
  let v;
  if (typeof value === "number") {
    if (unit === " W") return [label, watts(value)];
    if (unit === " Wh") return [label, wh(value)];
    v = Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(2);
    v = Number(v).toLocaleString("en-US") + unit;
  } else if (value === null || value === undefined) v = DASH;
  else if (typeof value === "object") v = JSON.stringify(value);
  else v = String(value) + unit;
  return [label, v];
}
