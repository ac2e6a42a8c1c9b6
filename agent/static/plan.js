// Dispatch plan card: GET /api/plan (agent/live/plan_view.py) as a plain SVG chart of the next 24 h:
// the planned SoC (line, left axis 0-100 %), the grid-import cap (steps, right axis; none where
// the slot has no demand charge) and the energy price (bars along the bottom). Refreshed every
// 30 s and redrawn on a language change. No plan says why (disabled, cold start, failed solve).
import { api } from "./http.js";
import { watts } from "./format.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";
// the drawing area in viewBox units: left/right axes, price strip at the bottom
const W = 600, L = 46, R = 58, T = 10, PH = 140, PRICE_T = 172, PRICE_H = 36;
const SPAN_S = 86400;
let last = null;

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const fx = (v) => v.toFixed(1);

// The chart's geometry for a plan's slots (exported for reading the drawing back in tests).
export function geometry(slots) {
  const t0 = slots[0].t, step = slots.length > 1 ? slots[1].t - t0 : 900;
  const x = (t) => L + (W - L - R) * (t - t0) / SPAN_S;
  const ySoc = (s) => T + PH * (1 - s / 100);
  const caps = slots.map((s) => s.grid_cap_w).filter((c) => c !== null);
  const capHi = caps.length ? Math.max(...caps) * 1.1 : 1;
  const yCap = (c) => T + PH * (1 - c / capHi);
  const pHi = Math.max(...slots.map((s) => s.price)) || 1;
  return { t0, step, x, ySoc, yCap, capHi, pHi };
}

function draw(svg, slots) {
  const g = geometry(slots);
  const kids = [];
  // axes: SoC % on the left, the cap on the right, hours along the bottom
  for (const s of [0, 25, 50, 75, 100]) {
    kids.push(el("line", { x1: L, x2: W - R, y1: fx(g.ySoc(s)), y2: fx(g.ySoc(s)), class: "grid-line" }));
    kids.push(el("text", { x: L - 4, y: fx(g.ySoc(s) + 4), class: "axis", "text-anchor": "end" }, `${s}%`));
  }
  for (const f of [0, 0.5, 1]) {
    kids.push(el("text", { x: W - R + 4, y: fx(g.yCap(g.capHi * f / 1.1) + 4), class: "axis cap" }, watts(g.capHi * f / 1.1, 1)));
  }
  for (let h = 0; h <= 24; h += 6) {
    const i = Math.min(slots.length - 1, Math.round(h * 3600 / g.step));
    const label = h === 24 ? "+24 h" : (slots[i]?.start ?? "").slice(11, 16);
    kids.push(el("text", { x: fx(g.x(g.t0 + h * 3600)), y: PRICE_T + PRICE_H + 14, class: "axis", "text-anchor": "middle" }, label));
  }
  // price: one bar per slot
  const price = el("g", { id: "plan-price" });
  for (const s of slots) {
    const hgt = PRICE_H * s.price / g.pHi;
    price.append(el("rect", { x: fx(g.x(s.t)), y: fx(PRICE_T + PRICE_H - hgt), width: fx(g.x(s.t + g.step) - g.x(s.t)), height: fx(hgt), "data-price": s.price }));
  }
  kids.push(price);
  // grid cap: a step per slot; a slot without a cap breaks the line
  let d = "";
  let open = false;
  for (const s of slots) {
    if (s.grid_cap_w === null) { open = false; continue; }
    const y = fx(g.yCap(s.grid_cap_w));
    d += `${open ? "L" : "M"}${fx(g.x(s.t))},${y}L${fx(g.x(s.t + g.step))},${y}`;
    open = true;
  }
  kids.push(el("path", { id: "plan-cap", d }));
  // SoC at the end of each slot
  const pts = slots.map((s) => `${fx(g.x(s.t + g.step))},${fx(g.ySoc(s.soc_pct))}`).join(" ");
  kids.push(el("polyline", { id: "plan-soc", points: pts }));
  svg.replaceChildren(...kids);
}

function render(p) {
  const svg = $("plan-chart"), note = $("plan-note");
  if (p instanceof Error) {
    note.textContent = `${t("not_available")}: ${p.message}`;
    svg.replaceChildren();
    return;
  }
  if (p.status !== "plan" || !p.slots.length) {
    note.textContent = `${t("plan_none")}: ${p.reason}`;
    svg.replaceChildren();
    return;
  }
  const made = (p.made_at ?? "").slice(11, 16);
  note.textContent = `${t("plan_made")} ${made} · ${t("plan_solve")} ${p.solve_ms.toFixed(0)} ms · ${p.reason}`;
  draw(svg, p.slots);
  svg.dataset.version = p.version; // which plan is drawn (the read-out's version)
}

async function refresh() {
  try {
    last = await api("/api/plan");
  } catch (e) {
    last = e;
  }
  render(last);
}

document.addEventListener("ems-lang", () => { if (last) render(last); });
refresh();
setInterval(refresh, 30_000);
