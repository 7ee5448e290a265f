// The servers table: search, sort, and rows drawn only where the eye is.
//
// Tens of thousands of rows would freeze the tab if all were in the DOM, so
// only the rows in view (plus a margin) are built, between two spacer rows
// that give the scroll bar its true length. Text goes in with textContent.
import { count, tone } from "./format.js";

const ROW_HEIGHT = 40;
const OVERSCAN = 12;
const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

function compareIds(a, b) {
  // Digit strings without leading zeros: the longer is the larger.
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

const COMPARATORS = {
  name: (a, b) => collator.compare(a.name, b.name),
  id: (a, b) => compareIds(a.id, b.id),
  members: (a, b) => a.members - b.members,
  channels: (a, b) => a.channels - b.channels,
  status: (a, b) => collator.compare(a.status, b.status),
};

export class ServerTable {
  constructor({ scroller, body, search, counter, headers }) {
    this.scroller = scroller;
    this.body = body;
    this.search = search;
    this.counter = counter;
    this.headers = headers;
    this.rows = [];
    this.view = [];
    this.query = "";
    this.sortKey = "name";
    this.sortDir = 1;
    this.frame = 0;
    this.searchTimer = 0;

    scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    window.addEventListener("resize", () => this.schedule());
    search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.setQuery(search.value), 120);
    });
    for (const button of headers) {
      button.addEventListener("click", () => this.sortBy(button.dataset.sort));
    }
    this.markSort();
  }

  setServers(servers) {
    this.rows = servers.map((server) => {
      const name = String(server.server_name);
      const id = String(server.server_id);
      const status = String(server.status);
      return {
        id,
        name,
        status,
        members: server.miembros,
        channels: server.canales,
        haystack: `${name}\u0000${id}\u0000${status}`.toLowerCase(),
      };
    });
    this.refresh();
  }

  setQuery(text) {
    this.query = text.trim().toLowerCase();
    this.scroller.scrollTop = 0;
    this.refresh();
  }

  sortBy(key) {
    if (!COMPARATORS[key]) return;
    this.sortDir = this.sortKey === key ? -this.sortDir : 1;
    this.sortKey = key;
    this.markSort();
    this.refresh();
  }

  markSort() {
    for (const button of this.headers) {
      const active = button.dataset.sort === this.sortKey;
      const order = this.sortDir > 0 ? "ascending" : "descending";
      button.closest("th").setAttribute("aria-sort", active ? order : "none");
    }
  }

  refresh() {
    const query = this.query;
    const matching = query
      ? this.rows.filter((row) => row.haystack.includes(query))
      : this.rows.slice();
    const compare = COMPARATORS[this.sortKey];
    const dir = this.sortDir;
    matching.sort((a, b) => dir * compare(a, b) || compareIds(a.id, b.id));
    this.view = matching;

    const total = this.rows.length;
    this.counter.textContent = query
      ? `${count(matching.length)} of ${count(total)} servers`
      : `${count(total)} ${total === 1 ? "server" : "servers"}`;
    this.draw();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  draw() {
    const total = this.view.length;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(total, first + Math.ceil(height / ROW_HEIGHT) + 2 * OVERSCAN);

    const fragment = document.createDocumentFragment();
    fragment.append(spacer(first * ROW_HEIGHT));
    for (let index = first; index < last; index += 1) {
      fragment.append(renderRow(this.view[index]));
    }
    fragment.append(spacer((total - last) * ROW_HEIGHT));
    if (total === 0) fragment.append(emptyRow(this.rows.length ? "No server matches the search." : "No servers reported."));
    this.body.replaceChildren(fragment);
  }
}

function spacer(height) {
  const row = document.createElement("tr");
  row.className = "spacer";
  row.setAttribute("aria-hidden", "true");
  row.style.height = `${height}px`;
  return row;
}

function emptyRow(text) {
  const row = document.createElement("tr");
  row.className = "empty";
  const cell = document.createElement("td");
  cell.colSpan = 5;
  cell.textContent = text;
  row.append(cell);
  return row;
}

function cell(className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  return td;
}

function renderRow(server) {
  const row = document.createElement("tr");

  // <bdi> isolates right-to-left names so they cannot reorder the row.
  const name = cell("name");
  const nameText = document.createElement("bdi");
  nameText.textContent = server.name;
  name.title = server.name;
  name.append(nameText);

  const id = cell("id");
  id.textContent = server.id;

  const members = cell("num");
  members.textContent = count(server.members);

  const channels = cell("num");
  channels.textContent = count(server.channels);

  const status = cell("status");
  const pill = document.createElement("bdi");
  pill.className = "pill";
  pill.dataset.tone = tone(server.status);
  pill.textContent = server.status;
  status.append(pill);

  row.append(name, id, members, channels, status);
  return row;
}
