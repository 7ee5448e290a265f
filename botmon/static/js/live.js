// The live stream: one WebSocket that comes back by itself.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
// A connection that lasted this long was healthy: start the backoff afresh.
const HEALTHY_AFTER_MS = 5000;

export function streamUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// Calls onState({state, retryAt}) and onMessage(text, isFirst) as things
// happen; `isFirst` marks the snapshot the server replays on connecting.
export class LiveStream {
  constructor(url, { onMessage, onState }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.failures = 0;
    this.socket = null;
  }

  start() {
    this.connect();
  }

  connect() {
    this.onState({ state: "connecting" });
    const socket = new WebSocket(this.url);
    const openedAt = { value: 0 };
    let first = true;
    this.socket = socket;

    socket.addEventListener("open", () => {
      openedAt.value = Date.now();
      this.onState({ state: "live" });
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      const isFirst = first;
      first = false;
      this.failures = 0;
      this.onMessage(event.data, isFirst);
    });
    socket.addEventListener("close", () => {
      if (openedAt.value && Date.now() - openedAt.value > HEALTHY_AFTER_MS) {
        this.failures = 0;
      }
      this.retry();
    });
  }

  retry() {
    // Exponential, capped, with jitter so that many screens do not all
    // knock at once after a restart.
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.failures);
    const wait = ceiling / 2 + Math.random() * (ceiling / 2);
    this.failures += 1;
    this.onState({ state: "retrying", retryAt: Date.now() + wait });
    setTimeout(() => this.connect(), wait);
  }
}
