// Reading botmon's JSON without losing digits.
//
// Discord snowflakes go up to 2^63-1, past what a JS number holds exactly
// (2^53), so JSON.parse would round 1234567890123456789. Every server_id
// integer is turned into a string token before parsing. The pattern cannot
// match inside a JSON string: a quote in a string is always escaped.
const SERVER_ID_NUMBER = /"server_id"(\s*):(\s*)(\d+)/g;

export function parseExact(text) {
  return JSON.parse(text.replace(SERVER_ID_NUMBER, '"server_id"$1:$2"$3"'));
}

// Milliseconds since the epoch from the wire's timestamps; the wire carries
// microseconds, which Date cannot hold, so the extra digits are dropped.
export function parseTime(text) {
  if (typeof text !== "string") return NaN;
  return Date.parse(text.replace(/(\.\d{3})\d+/, "$1"));
}

export async function fetchJson(path) {
  const started = Date.now();
  const response = await fetch(path, {
    cache: "no-store",
    headers: { Accept: "application/json" },
  });
  // A changed read token or an expired cookie: the page itself then says how
  // to get in again.
  if (response.status === 401) location.reload();
  const text = await response.text();
  const finished = Date.now();
  let body = null;
  try {
    body = parseExact(text);
  } catch {
    body = null;
  }
  return { status: response.status, ok: response.ok, body, started, finished };
}
