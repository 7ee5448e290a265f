// How values are shown: numbers, times in the viewer's zone, colours.

const numberFormat = new Intl.NumberFormat(undefined);
const decimalFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "always" });
const dateTime = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

export function count(value) {
  return typeof value === "number" ? numberFormat.format(value) : "–";
}

export function decimal(value) {
  return typeof value === "number" ? decimalFormat.format(value) : "–";
}

export function localDateTime(ms) {
  return Number.isFinite(ms) ? dateTime.format(ms) : "–";
}

export function localTime(ms) {
  return Number.isFinite(ms) ? timeOnly.format(ms) : "–";
}

const UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

// "3 minutes ago" for a moment `ms`, seen from `nowMs` (both on one clock).
export function ago(ms, nowMs) {
  if (!Number.isFinite(ms)) return "–";
  const seconds = (ms - nowMs) / 1000;
  if (Math.abs(seconds) < 5) return "just now";
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relative.format(Math.trunc(seconds / size), unit);
    }
  }
  return "–";
}

// "4 min 12 s" / "2 h 5 min" / "3 d 4 h": a length of time, two units at most.
export function duration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${rest} s`;
  return `${rest} s`;
}

// Known status words get a colour; any other word is shown in a neutral one.
const TONES = new Map([
  ["online", "ok"],
  ["conectado", "ok"],
  ["connected", "ok"],
  ["idle", "warn"],
  ["ausente", "warn"],
  ["dnd", "bad"],
  ["offline", "off"],
  ["desconectado", "off"],
  ["disconnected", "off"],
  ["invisible", "off"],
]);

export function tone(word) {
  return TONES.get(String(word).trim().toLowerCase()) || "neutral";
}
