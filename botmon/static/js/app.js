// The status page: state from the API at start, then live from the socket.
import { Charts } from "./charts.js";
import { ago, count, decimal, duration, localDateTime, localTime, tone } from "./format.js";
import { LiveStream, streamUrl } from "./live.js";
import { ServerTable } from "./table.js";
import { fetchJson, parseExact, parseTime } from "./wire.js";

// Refused pushes are not broadcast, so the page asks for them this often.
const META_EVERY_MS = 5000;
const CONFIG_EVERY_MS = 5 * 60000;
const REFRESH_SPACING_MS = 1000;

const $ = (id) => document.getElementById(id);

const state = {
  config: { stale_after_seconds: 180, history_retention_days: 30, history_max_points: 2000 },
  clockOffsetMs: 0, // botmon's clock minus the browser's
  snapshot: null,
  receivedAtMs: NaN, // when botmon received the newest snapshot, its clock
  noMetrics: false,
  refusals: null,
  history: [],
  link: { state: "connecting", retryAt: 0 },
};

const serverNow = () => Date.now() + state.clockOffsetMs;

const table = new ServerTable({
  scroller: $("table-scroll"),
  body: $("servers-body"),
  search: $("server-search"),
  counter: $("table-count"),
  headers: [...document.querySelectorAll("#servers-table button[data-sort]")],
});
const charts = new Charts($("chart-latency"), $("chart-activity"));

// ---- talking to botmon ----------------------------------------------------

async function loadConfig() {
  const answer = await fetchJson("/api/bot/config/");
  if (!answer.ok || !answer.body) return;
  state.config = answer.body;
  // Half the round trip is the best guess of when the server read its clock.
  const midpoint = (answer.started + answer.finished) / 2;
  state.clockOffsetMs = parseTime(answer.body.now) - midpoint;
}

async function loadMeta() {
  const [estado, refusals] = await Promise.all([
    fetchJson("/api/bot/estado/"),
    fetchJson("/api/bot/rechazos/"),
  ]);
  if (estado.ok && estado.body) {
    state.noMetrics = false;
    state.receivedAtMs = parseTime(estado.body.recibido_en);
  } else if (estado.status === 404) {
    state.noMetrics = state.snapshot === null;
  }
  if (refusals.ok && refusals.body) state.refusals = refusals.body;
}

// History loads run one after another, so that a full load and an
// incremental one cannot interleave and count a point twice.
let historyChain = Promise.resolve();
function loadHistory(options) {
  historyChain = historyChain.then(() => loadHistoryNow(options)).catch((error) => {
    console.warn("botmon: history failed", error);
  });
  return historyChain;
}

async function loadHistoryNow({ full }) {
  const last = state.history.at(-1);
  const retentionMs = state.config.history_retention_days * 86400000;
  const since = full || !last ? new Date(serverNow() - retentionMs).toISOString() : last.recibido_en;
  const until = new Date(serverNow() + 60000).toISOString();
  const limit = state.config.history_max_points;
  const query = new URLSearchParams({ since, until, limit });
  const answer = await fetchJson(`/api/bot/history/?${query}`);
  if (!answer.ok || !answer.body) return;

  const points = answer.body.points.map((point) => ({ ...point, at: parseTime(point.recibido_en) }));
  if (full || !last) {
    state.history = points;
  } else {
    state.history.push(...points.filter((point) => point.at > last.at));
  }
  const excess = state.history.length - limit;
  if (excess > 0) state.history.splice(0, excess);
  charts.show(state.history, state.config.stale_after_seconds * 1000);
  showHistoryRange();
}

// Many pushes in a burst cause one refresh in flight and at most one queued.
let refreshing = false;
let refreshQueued = false;
async function refresh() {
  if (refreshing) {
    refreshQueued = true;
    return;
  }
  refreshing = true;
  try {
    await Promise.all([loadMeta(), loadHistory({ full: false })]);
  } catch (error) {
    console.warn("botmon: refresh failed", error);
  } finally {
    refreshing = false;
    render();
    if (refreshQueued) {
      refreshQueued = false;
      setTimeout(refresh, REFRESH_SPACING_MS);
    }
  }
}

async function reload() {
  try {
    await loadConfig();
    await Promise.all([loadMeta(), loadHistory({ full: true })]);
  } catch (error) {
    console.warn("botmon: reload failed", error);
  }
  render();
}

function onMessage(text, isFirst) {
  let snapshot;
  try {
    snapshot = parseExact(text);
  } catch (error) {
    console.warn("botmon: unreadable message", error);
    return;
  }
  state.snapshot = snapshot;
  state.noMetrics = false;
  // A push just arrived, unless this is the snapshot replayed on connecting;
  // the exact receipt time follows from the API.
  if (!isFirst) state.receivedAtMs = serverNow();
  table.setServers(snapshot.servers);
  render();
  refresh();
}

function onLinkState(link) {
  const wasLive = state.link.state === "live";
  state.link = link;
  renderLink();
  if (link.state === "live" && !wasLive) reload();
}

// ---- drawing -------------------------------------------------------------

function setText(id, text) {
  const element = $(id);
  if (element.textContent !== text) element.textContent = text;
}

function render() {
  const snapshot = state.snapshot;
  $("empty-banner").hidden = !(state.noMetrics && !snapshot);
  if (snapshot) {
    const { resumen, estado } = snapshot;
    const word = String(estado.status);
    setText("bot-status", word);
    $("bot-state").dataset.tone = tone(word);
    setText("latency", decimal(estado.latencia_ms));
    setText("uptime-percent", decimal(resumen.uptime_porcentaje));
    setText("uptime-days", `${count(estado.uptime_dias)} ${estado.uptime_dias === 1 ? "day" : "days"} up`);
    setText("events-today", count(resumen.eventos_procesados_hoy));
    setText("servers-connected", count(resumen.servidores_conectados));
    setText("servers-listed", `${count(snapshot.servers.length)} listed`);
    setText("last-sync", localDateTime(parseTime(resumen.ultima_sincronizacion)));
    setText("last-connection", localDateTime(parseTime(estado.ultima_conexion)));
  }
  tick();
}

// Everything that changes with the clock alone: "ago" texts and the banners.
function tick() {
  const now = serverNow();
  const snapshot = state.snapshot;
  if (snapshot) {
    setText("last-sync-ago", ago(parseTime(snapshot.resumen.ultima_sincronizacion), now));
    setText("last-connection-ago", ago(parseTime(snapshot.estado.ultima_conexion), now));
  }
  renderSilence(now);
  renderRefusals(now);
  renderLink();
}

function renderSilence(now) {
  const limitMs = state.config.stale_after_seconds * 1000;
  const silentMs = now - state.receivedAtMs;
  const silent = Number.isFinite(silentMs) && silentMs > limitMs;
  $("silence-banner").hidden = !silent;
  document.body.classList.toggle("is-silent", silent);
  if (!silent) return;
  setText("silence-title", `No metrics from the bot for ${duration(silentMs / 1000)}`);
  setText(
    "silence-detail",
    `Last push received at ${localTime(state.receivedAtMs)} (${ago(state.receivedAtMs, now)}); ` +
      `botmon calls a bot silent after ${duration(limitMs / 1000)}. ` +
      "Check that the bot is running and can reach botmon. The values below are its last report.",
  );
}

function renderRefusals(now) {
  const last = state.refusals && state.refusals.ultimo;
  const lastAt = last ? parseTime(last.en) : NaN;
  // Only refusals since the last accepted push say something about the bot now.
  const current = Number.isFinite(lastAt) && !(lastAt <= state.receivedAtMs);
  $("refusal-banner").hidden = !current;
  if (!current) return;
  const total = state.refusals.total;
  // A push without the right key may come from a bot with an old key or from
  // anyone else who can reach botmon: do not claim it was the bot.
  const who = last.status === 401
    ? "Pushes with a wrong or missing API key are being refused"
    : "The bot is alive, but its pushes are being refused";
  setText("refusal-title", `${who} (${count(total)} refused in all)`);
  setText(
    "refusal-detail",
    `Last refusal ${ago(lastAt, now)} at ${localTime(lastAt)}: ${last.status} ${last.error}: ` +
      `${last.message}`,
  );
}

function renderLink() {
  const link = state.link;
  $("link").dataset.link = link.state;
  let text = "connecting…";
  if (link.state === "live") text = "live";
  if (link.state === "retrying") {
    const seconds = Math.max(0, Math.ceil((link.retryAt - Date.now()) / 1000));
    text = `disconnected · retrying in ${seconds} s`;
  }
  setText("link-text", text);
}

function showHistoryRange() {
  const points = state.history;
  setText(
    "history-range",
    points.length
      ? `${count(points.length)} ${points.length === 1 ? "point" : "points"} since ` +
          localDateTime(points[0].at)
      : "",
  );
}

// ---- start ---------------------------------------------------------------

reload();
new LiveStream(streamUrl("/ws/bot/metrics/"), { onMessage, onState: onLinkState }).start();
setInterval(tick, 1000);
setInterval(() => refresh(), META_EVERY_MS);
setInterval(() => loadConfig().catch(() => {}), CONFIG_EVERY_MS);
