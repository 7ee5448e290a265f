// Latency and activity over the retained history, drawn with uPlot.
import { decimal, count } from "./format.js";

const uPlot = window.uPlot;
const HEIGHT = 220;
const INK = "#93a1b8";
const GRID = "rgba(148, 163, 184, 0.12)";

function axis(extra = {}) {
  return {
    stroke: INK,
    font: "12px system-ui, sans-serif",
    grid: { stroke: GRID, width: 1 },
    ticks: { stroke: GRID, width: 1 },
    ...extra,
  };
}

function line(label, color, extra = {}) {
  return {
    label,
    stroke: color,
    width: 2,
    fill: `${color}22`,
    points: { size: 5, fill: color },
    ...extra,
  };
}

const MIN_SPAN_SECONDS = 1800;

class Chart {
  constructor(container, options) {
    this.container = container;
    this.note = document.createElement("p");
    this.note.className = "chart-note";
    this.note.textContent = "No history yet: points appear as the bot reports.";
    container.append(this.note);
    const x = { time: true };
    this.plot = new uPlot(
      { width: this.width(), height: HEIGHT, ...options, scales: { x, ...options.scales } },
      options.series.map(() => []),
      container,
    );
    new ResizeObserver(() => this.plot.setSize({ width: this.width(), height: HEIGHT }))
      .observe(container);
  }

  width() {
    return Math.max(240, this.container.clientWidth);
  }

  setData(data) {
    const times = data[0];
    this.note.hidden = times.length > 0;
    this.plot.setData(data);
    // A short history would otherwise be stretched over the whole axis, and
    // a lone point over years: show at least the last half hour.
    if (!times.length) return;
    const last = times[times.length - 1];
    if (last - times[0] < MIN_SPAN_SECONDS) {
      this.plot.setScale("x", { min: last - MIN_SPAN_SECONDS, max: last + 60 });
    }
    // The axis is drawn on a canvas; its span is also kept where it can be read.
    const { min, max } = this.plot.scales.x;
    this.container.dataset.spanSeconds = String(Math.round(max - min));
  }
}

export class Charts {
  constructor(latencyElement, activityElement) {
    this.latency = new Chart(latencyElement, {
      series: [
        {},
        line("Latency", "#38bdf8", { value: (u, v) => (v == null ? "–" : `${decimal(v)} ms`) }),
      ],
      axes: [axis(), axis({ size: 64, values: (u, vals) => vals.map((v) => `${decimal(v)} ms`) })],
      scales: { y: { range: (u, min, max) => [0, Math.max(10, max * 1.15)] } },
    });
    this.activity = new Chart(activityElement, {
      series: [
        {},
        line("Events today", "#a78bfa", { scale: "events", value: (u, v) => count(v) }),
        line("Servers connected", "#34d399", { scale: "servers", value: (u, v) => count(v) }),
      ],
      axes: [
        axis(),
        axis({ scale: "events", size: 64, values: (u, vals) => vals.map(compact) }),
        axis({ scale: "servers", side: 1, size: 56, grid: { show: false },
          values: (u, vals) => vals.map(compact) }),
      ],
      scales: {
        events: { range: (u, min, max) => [0, Math.max(10, max * 1.1)] },
        servers: { range: (u, min, max) => [0, Math.max(5, max * 1.1)] },
      },
    });
  }

  // `points` are history points, oldest first, with `at` in milliseconds.
  // A silence (longer than the stale limit and than the bot's usual pace)
  // breaks the line instead of bridging it.
  show(points, staleMs) {
    const gapMs = Math.max(staleMs, 2.5 * medianStep(points));
    const x = [];
    const latency = [];
    const events = [];
    const servers = [];
    let previous = null;
    for (const point of points) {
      if (previous !== null && point.at - previous > gapMs) {
        x.push((previous + point.at) / 2000);
        latency.push(null);
        events.push(null);
        servers.push(null);
      }
      previous = point.at;
      x.push(point.at / 1000);
      latency.push(point.estado.latencia_ms);
      events.push(point.resumen.eventos_procesados_hoy);
      servers.push(point.resumen.servidores_conectados);
    }
    this.latency.setData([x, latency]);
    this.activity.setData([x, events, servers]);
  }
}

const compactFormat = new Intl.NumberFormat(undefined, { notation: "compact" });
function compact(value) {
  return value == null ? "" : compactFormat.format(value);
}

function medianStep(points) {
  const steps = [];
  for (let index = 1; index < points.length; index += 1) {
    steps.push(points[index].at - points[index - 1].at);
  }
  steps.sort((a, b) => a - b);
  return steps.length ? steps[Math.floor(steps.length / 2)] : 0;
}
