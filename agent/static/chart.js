// Rolling line chart on a canvas, hand-written (no library): GPU load, grid import, battery.
// The point of the chart is to make the smoothing visible: the load swings, the grid line
// stays calm, the battery line mirrors the swings.
import { watts } from "./format.js";

const SERIES = [
  { key: "load", color: "#E69F00", width: 2, dash: [] },
  { key: "grid", color: "#56B4E9", width: 3.5, dash: [] },
  { key: "bat", color: "#009E73", width: 2, dash: [7, 5] },
];

function niceStep(span, n) {
  const raw = span / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

export class RollingChart {
  constructor(canvas, windowS = 300) {
    this.c = canvas;
    this.windowS = windowS;
    this.pts = []; // {t (s), load, grid, bat} in W
    this.target = null;
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  replace(hist) {
    this.pts = hist.t.map((t, i) => ({ t, load: hist.load_w[i], grid: hist.grid_w[i], bat: hist.battery_w[i] }));
    this.draw();
  }

  push(p) {
    const last = this.pts[this.pts.length - 1];
    if (last && p.t <= last.t) return; // duplicate cycle after a reconnect
    this.pts.push(p);
    const cut = p.t - this.windowS;
    while (this.pts.length && this.pts[0].t < cut) this.pts.shift();
    this.draw();
  }

  draw() {
    const c = this.c, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 64, R = 10, T = 8, B = 22;
    const pw = w - L - R, ph = h - T - B;
    const now = this.pts.length ? this.pts[this.pts.length - 1].t : Date.now() / 1000;
    let lo = 0, hi = 1;
    for (const p of this.pts) for (const s of SERIES) {
      const v = p[s.key];
      if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (this.target) hi = Math.max(hi, this.target);
    const step = niceStep(hi - lo || 1, 5);
    lo = Math.floor(lo / step) * step; hi = Math.ceil(hi / step) * step;
    const x = (t) => L + pw * (1 - (now - t) / this.windowS);
    const y = (v) => T + ph * (1 - (v - lo) / (hi - lo));

    g.font = "11px DejaVu Sans, sans-serif";
    g.fillStyle = "#93a1ad"; g.strokeStyle = "#2c353f"; g.lineWidth = 1;
    g.textAlign = "right"; g.textBaseline = "middle";
    for (let v = lo; v <= hi + step / 2; v += step) {
      g.beginPath(); g.moveTo(L, y(v)); g.lineTo(L + pw, y(v)); g.stroke();
      g.fillText(watts(v, Math.abs(step) < 1e6 && Math.abs(v) >= 1e6 ? 1 : 0), L - 6, y(v));
    }
    g.textAlign = "center"; g.textBaseline = "top";
    for (let s = 0; s <= this.windowS; s += 60) {
      const xx = x(now - s);
      g.beginPath(); g.moveTo(xx, T); g.lineTo(xx, T + ph); g.stroke();
      g.textAlign = s === 0 ? "right" : s === this.windowS ? "left" : "center"; // keep edge labels inside
      g.fillText(s === 0 ? "now" : `-${s / 60} min`, xx, T + ph + 5);
    }
    if (lo < 0) { // zero line: above = discharge / import
      g.strokeStyle = "#93a1ad"; g.beginPath(); g.moveTo(L, y(0)); g.lineTo(L + pw, y(0)); g.stroke();
    }
    if (this.target) {
      g.strokeStyle = "#CC79A7"; g.setLineDash([2, 4]); g.lineWidth = 2;
      g.beginPath(); g.moveTo(L, y(this.target)); g.lineTo(L + pw, y(this.target)); g.stroke();
      g.setLineDash([]);
    }
    g.save();
    g.beginPath(); g.rect(L, T, pw, ph); g.clip();
    for (const s of SERIES) {
      g.strokeStyle = s.color; g.lineWidth = s.width; g.setLineDash(s.dash); g.lineJoin = "round";
      g.beginPath();
      let pen = false;
      for (const p of this.pts) {
        const v = p[s.key];
        if (v === null || !isFinite(v)) { pen = false; continue; } // a gap, not a fake zero
        if (pen) g.lineTo(x(p.t), y(v)); else g.moveTo(x(p.t), y(v));
        pen = true;
      }
      g.stroke();
    }
    g.restore();
    g.setLineDash([]);
  }
}
