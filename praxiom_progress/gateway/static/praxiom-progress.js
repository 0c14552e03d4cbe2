// praxiom-progress.js: live task progress elements for a praxiom-progress gateway.
//
// A dependency-free ES module; no build step. Load it once per page:
//
//   <script type="module" src="https://api.example.com/static/praxiom-progress.js"></script>
//   <praxiom-task task-id="…"></praxiom-task>
//   <praxiom-task task-id="…" workspace-id="…"></praxiom-task>   (shares one workspace stream)
//   <praxiom-workspace-tasks workspace-id="…"></praxiom-workspace-tasks>
//
// Attributes on both elements: `base-url` (the gateway, when it is not this page's origin) and
// `with-credentials` (send the session cookie to that other origin; the gateway must allow the
// page's origin in CORS_ALLOWED_ORIGINS). Events (bubbling, composed): `praxiom-progress` with
// each new state in `detail`, `praxiom-done` once with the terminal one, `praxiom-error` with
// `{status, code, message}` when access is lost or the task is unknown. Style through the CSS
// custom properties `--praxiom-*` below and the parts `header`, `label`, `status`, `bar`,
// `fill`, `details`, `pct`, `phase`, `message` (and, on the list, `list`, `row`, `finished`,
// `empty`, `error`).

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30000;
const TASK_PARTS = "header, label, status, bar, fill, details, pct, phase, message";

// -- talking to the gateway ----------------------------------------------------------------------

/** Where and how an element reaches the gateway, from its attributes. */
function endpointOf(element) {
  const base = (element.getAttribute("base-url") || "").trim().replace(/\/+$/, "");
  const withCredentials = element.hasAttribute("with-credentials");
  return { base, withCredentials, key: `${base}\n${withCredentials}` };
}

async function getJson(endpoint, path) {
  const response = await fetch(endpoint.base + path, {
    credentials: endpoint.withCredentials ? "include" : "same-origin",
    headers: { Accept: "application/json" },
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's error page): the status says enough
  }
  return { status: response.status, ok: response.ok, body };
}

/** A refusal as the `praxiom-error` event tells it. */
function refusalOf(answer) {
  const error = (answer.body && answer.body.error) || {};
  return {
    status: answer.status,
    code: error.code || "ERROR",
    message: error.message || `The gateway answered ${answer.status}`,
  };
}

/** 401, 403 and 404 will not change by waiting: access is lost, or there is nothing to see. */
function isFinalRefusal(status) {
  return status === 401 || status === 403 || status === 404;
}

function isPayload(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    typeof value.id === "string" &&
    typeof value.status === "string" &&
    Number.isInteger(value.version)
  );
}

function retryDelay(failures) {
  const base = Math.min(FIRST_RETRY_MS * 2 ** failures, MAX_RETRY_MS);
  return base * (0.5 + Math.random() / 2); // jitter: a fleet of pages does not come back at once
}

/**
 * One EventSource, kept alive as the spec's client expects: the browser reconnects by itself
 * (with Last-Event-ID) after a dropped connection; when it gives up for good (an answer that
 * is not a stream: 204, 401, 403, 404, 503), `probe` asks the gateway why, and says whether
 * to open it again (after a backoff) or stop.
 */
class LiveStream {
  constructor(endpoint, path, { onPayload, probe }) {
    this.endpoint = endpoint;
    this.path = path;
    this.onPayload = onPayload;
    this.probe = probe;
    this.lastEventId = null;
    this.failures = 0;
    this.source = null;
    this.timer = null;
    this.closed = false;
  }

  open() {
    if (this.closed) {
      return;
    }
    const resume = this.lastEventId ? `?last_event_id=${encodeURIComponent(this.lastEventId)}` : "";
    const source = new EventSource(this.endpoint.base + this.path + resume, {
      withCredentials: this.endpoint.withCredentials,
    });
    this.source = source;
    source.onmessage = (event) => {
      this.failures = 0;
      if (event.lastEventId) {
        this.lastEventId = event.lastEventId;
      }
      let payload = null;
      try {
        payload = JSON.parse(event.data);
      } catch {
        return; // not JSON: not ours to show
      }
      if (isPayload(payload)) {
        this.onPayload(payload);
      }
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED && this.source === source) {
        this.source = null;
        this.recover();
      }
      // CONNECTING: EventSource reconnects automatically; no action needed
    };
  }

  async recover() {
    let again = true;
    try {
      again = await this.probe();
    } catch {
      again = true; // the gateway is unreachable: try again later
    }
    if (!again || this.closed) {
      this.close();
      return;
    }
    this.timer = setTimeout(() => this.open(), retryDelay(this.failures++));
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }
}

// -- one workspace stream per page, shared ------------------------------------------------------

const FEEDS = new Map();

/**
 * `GET /api/workspaces/{id}/progress`, opened once per page (per gateway and credentials) for
 * every element that follows the workspace, and closed when the last one leaves. It keeps the
 * newest state of each task it has seen, so an element added later starts from it.
 */
export class WorkspaceFeed {
  static for(endpoint, workspaceId) {
    const key = `${endpoint.key}\n${workspaceId}`;
    let feed = FEEDS.get(key);
    if (!feed) {
      feed = new WorkspaceFeed(endpoint, workspaceId, key);
      FEEDS.set(key, feed);
    }
    return feed;
  }

  constructor(endpoint, workspaceId, key) {
    this.endpoint = endpoint;
    this.workspaceId = workspaceId;
    this.key = key;
    this.states = new Map();
    this.listeners = new Set();
    this.lost = null;
    const id = encodeURIComponent(workspaceId);
    this.stream = new LiveStream(endpoint, `/api/workspaces/${id}/progress`, {
      onPayload: (payload) => this.accept(payload),
      probe: () => this.probe(),
    });
    this.stream.open();
  }

  /** `listener` = {onPayload(payload), onLost(refusal)}; returns the unsubscribe function. */
  subscribe(listener) {
    this.listeners.add(listener);
    if (this.lost) {
      queueMicrotask(() => listener.onLost(this.lost));
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        this.stream.close();
        FEEDS.delete(this.key);
      }
    };
  }

  /** Keep a state only if it is newer than the one held: versions never go back. */
  accept(payload) {
    const held = this.states.get(payload.id);
    if (held && held.version >= payload.version) {
      return;
    }
    this.states.set(payload.id, payload);
    for (const listener of [...this.listeners]) {
      listener.onPayload(payload);
    }
  }

  async probe() {
    const id = encodeURIComponent(this.workspaceId);
    const answer = await getJson(this.endpoint, `/api/tasks?workspace_id=${id}&limit=1`);
    if (answer.ok || !isFinalRefusal(answer.status)) {
      return true;
    }
    this.lost = refusalOf(answer);
    for (const listener of [...this.listeners]) {
      listener.onLost(this.lost);
    }
    return false;
  }
}

// -- styles -------------------------------------------------------------------------------------

const TASK_CSS = `
:host {
  display: block;
  --_state: var(--praxiom-running-color, #0b5cad);
}
:host([hidden]) { display: none; }
:host([status="pending"]) { --_state: var(--praxiom-pending-color, #57606a); }
:host([status="completed"]) { --_state: var(--praxiom-completed-color, #1a7f37); }
:host([status="failed"]), :host([status="lost"]) { --_state: var(--praxiom-failed-color, #c0262d); }
:host([status="cancelled"]) { --_state: var(--praxiom-cancelled-color, #8a5a00); }
[part~="header"] { display: flex; justify-content: space-between; gap: 1rem; align-items: baseline; }
[part~="label"] { font-weight: 600; }
[part~="status"] { color: var(--_state); font-weight: 700; font-size: 0.9em; }
[part~="bar"] {
  margin: 0.4rem 0;
  height: var(--praxiom-bar-height, 0.6rem);
  border-radius: var(--praxiom-bar-radius, 999px);
  background: var(--praxiom-track-color, #e6e9ed);
  overflow: hidden;
}
[part~="fill"] {
  height: 100%;
  width: 0;
  background: var(--praxiom-bar-color, var(--_state));
  border-radius: inherit;
  transition: width var(--praxiom-transition, 0.35s) ease-out;
}
[part~="details"] { display: flex; gap: 0.5rem; align-items: baseline; }
[part~="pct"] { font-weight: 700; font-variant-numeric: tabular-nums; min-width: 4ch; }
[part~="phase"] { font-family: ui-monospace, monospace; font-size: 0.9em; opacity: 0.8; }
[part~="message"] { margin-top: 0.2rem; }
@media (prefers-reduced-motion: reduce) { [part~="fill"] { transition: none; } }
`;

const LIST_CSS = `
:host { display: block; }
:host([hidden]) { display: none; }
[part~="list"] { list-style: none; margin: 0; padding: 0; display: grid; gap: var(--praxiom-gap, 0.75rem); }
[part~="row"] { transition: opacity var(--praxiom-fade-duration, 1s) ease-in; }
[part~="finished"] { opacity: var(--praxiom-finished-opacity, 0.75); }
[part~="row"].fading { opacity: 0; }
[part~="error"] { color: var(--praxiom-failed-color, #c0262d); }
[hidden] { display: none !important; }
`;

const SHEETS = new Map();

/** The element's style: a constructed stylesheet (no inline <style>, so a strict
 * Content-Security-Policy allows it), or a <style> element where those are not supported. */
function adoptStyle(root, css) {
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet.prototype.replaceSync === "function") {
    let sheet = SHEETS.get(css);
    if (!sheet) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      SHEETS.set(css, sheet);
    }
    root.adoptedStyleSheets = [sheet];
  } else {
    const style = document.createElement("style");
    style.textContent = css;
    root.append(style);
  }
}

function part(tag, name, attributes = {}) {
  const el = document.createElement(tag);
  el.setAttribute("part", name);
  for (const [key, value] of Object.entries(attributes)) {
    el.setAttribute(key, value);
  }
  return el;
}

// -- <praxiom-task> -----------------------------------------------------------------------------

/** One task's live bar: status, percentage, phase and message. */
export class PraxiomTask extends HTMLElement {
  static observedAttributes = ["task-id", "workspace-id", "base-url", "with-credentials", "label"];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    adoptStyle(root, TASK_CSS);
    this.$ = {
      header: part("div", "header"),
      label: part("span", "label"),
      status: part("span", "status", { role: "status" }),
      bar: part("div", "bar", {
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": "0",
      }),
      fill: part("div", "fill"),
      details: part("div", "details"),
      pct: part("span", "pct"),
      phase: part("span", "phase"),
      message: part("div", "message"),
    };
    const $ = this.$;
    $.header.append($.label, $.status);
    $.bar.append($.fill);
    $.details.append($.pct, $.phase);
    root.append($.header, $.bar, $.details, $.message);
    this._payload = null;
    this._stop = null;
    this._done = false;
    this._connected = false;
  }

  /** The newest state shown (null before the first). */
  get payload() {
    return this._payload;
  }

  /** Show a state handed in (a list it came from, a spawn's answer); an older one is ignored. */
  set payload(value) {
    if (isPayload(value)) {
      this._show(value);
    }
  }

  connectedCallback() {
    this._connected = true;
    this._follow();
  }

  disconnectedCallback() {
    this._connected = false;
    this._unfollow();
  }

  // Called for each attribute at the upgrade too, before connectedCallback: only a change
  // after that restarts anything.
  attributeChangedCallback(name, before, after) {
    if (before === after || !this._connected) {
      return;
    }
    if (name === "label") {
      this._render();
      return;
    }
    this._unfollow();
    if (name === "task-id") {
      this._payload = null;
      this._done = false;
    }
    this._follow();
  }

  _follow() {
    const taskId = (this.getAttribute("task-id") || "").trim();
    this._render();
    if (!taskId || this._done) {
      return;
    }
    const endpoint = endpointOf(this);
    const workspaceId = (this.getAttribute("workspace-id") || "").trim();
    if (workspaceId) {
      this._followWorkspace(endpoint, workspaceId, taskId);
    } else {
      this._followTask(endpoint, taskId);
    }
  }

  /** Its own stream: `GET /api/tasks/{id}/progress`, closed at the terminal state. */
  _followTask(endpoint, taskId) {
    const id = encodeURIComponent(taskId);
    const stream = new LiveStream(endpoint, `/api/tasks/${id}/progress`, {
      onPayload: (payload) => payload.id === taskId && this._show(payload),
      // 204 (the stream has nothing newer), a refusal, or an outage: the status says which.
      probe: () => this._check(endpoint, taskId),
    });
    this._stop = () => stream.close();
    stream.open();
  }

  /** The page's one workspace stream, shared; the task's current state once, unless the
   * stream already has it (a task that ended long ago is not on the stream). */
  _followWorkspace(endpoint, workspaceId, taskId) {
    const feed = WorkspaceFeed.for(endpoint, workspaceId);
    this._stop = feed.subscribe({
      onPayload: (payload) => payload.id === taskId && this._show(payload),
      onLost: (refusal) => this._lose(refusal),
    });
    const held = feed.states.get(taskId);
    if (held) {
      this._show(held);
    } else if (!this._payload) {
      this._check(endpoint, taskId).catch(() => {
        // unreachable now; the workspace stream brings the state when it is back
      });
    }
  }

  /** `GET /api/tasks/{id}/status`: show it; whether a stream is still worth following. */
  async _check(endpoint, taskId) {
    const answer = await getJson(endpoint, `/api/tasks/${encodeURIComponent(taskId)}/status`);
    if (answer.ok && isPayload(answer.body)) {
      this._show(answer.body);
      return !TERMINAL.has(answer.body.status);
    }
    if (isFinalRefusal(answer.status)) {
      this._lose(refusalOf(answer));
      return false;
    }
    return true;
  }

  _unfollow() {
    if (this._stop) {
      this._stop();
      this._stop = null;
    }
  }

  _show(payload) {
    if (this._payload && this._payload.version >= payload.version) {
      return; // versions never go back
    }
    this._payload = payload;
    this._render();
    this._emit("praxiom-progress", payload);
    if (TERMINAL.has(payload.status) && !this._done) {
      this._done = true;
      this._unfollow();
      this._emit("praxiom-done", payload);
    }
  }

  _lose(refusal) {
    this._unfollow();
    this._done = true;
    this.setAttribute("status", "lost");
    this.$.status.textContent = refusal.status === 404 ? "not found" : "no access";
    this.$.message.textContent = refusal.message;
    this.$.bar.setAttribute("aria-valuetext", `${refusal.message}`);
    this._emit("praxiom-error", refusal);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  _render() {
    const $ = this.$;
    const payload = this._payload;
    const label = this.getAttribute("label") || (payload ? payload.task_type : "Task");
    $.label.textContent = label;
    $.bar.setAttribute("aria-label", `Progress of ${label}`);
    if (!payload) {
      $.status.textContent = "connecting";
      $.bar.setAttribute("aria-valuetext", "Waiting for the task's state");
      return;
    }
    const pct = Math.max(0, Math.min(100, Number(payload.progress_pct) || 0));
    if ($.status.textContent !== payload.status) {
      $.status.textContent = payload.status; // role=status: announced when it changes
    }
    this.setAttribute("status", payload.status);
    this.setAttribute("progress", String(pct));
    $.bar.setAttribute("aria-valuenow", String(pct));
    const message = payload.status === "failed" && payload.error ? payload.error : payload.message;
    $.bar.setAttribute("aria-valuetext", `${pct}% (${payload.status}), ${payload.phase}: ${message}`);
    $.fill.style.width = `${pct}%`;
    $.pct.textContent = `${pct}%`;
    $.phase.textContent = payload.phase;
    $.message.textContent = message;
  }
}

// -- <praxiom-workspace-tasks> ------------------------------------------------------------------

/** A workspace's tasks, newest first, live: the running ones from `GET /api/tasks`, every
 * change (spawns included) from the workspace stream; finished ones fade after `fade-after`
 * seconds (default 30; 0 keeps them). `limit` caps how many running tasks are listed. */
export class PraxiomWorkspaceTasks extends HTMLElement {
  static observedAttributes = ["workspace-id", "base-url", "with-credentials", "limit"];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    adoptStyle(root, LIST_CSS);
    this.$ = {
      empty: part("p", "empty"),
      error: part("p", "error", { role: "alert", hidden: "" }),
      list: part("ol", "list", { "aria-live": "off" }),
    };
    this.$.empty.textContent = "No tasks.";
    root.append(this.$.error, this.$.empty, this.$.list);
    this._rows = new Map();
    this._stop = null;
    this._generation = 0;
    this._connected = false;
  }

  connectedCallback() {
    this._connected = true;
    this._follow();
  }

  disconnectedCallback() {
    this._connected = false;
    this._unfollow();
  }

  attributeChangedCallback(name, before, after) {
    if (before !== after && this._connected) {
      this._unfollow();
      this._follow();
    }
  }

  /** The listed tasks' ids, newest first. */
  get taskIds() {
    return [...this.$.list.children].map((row) => row.dataset.taskId);
  }

  _follow() {
    const workspaceId = (this.getAttribute("workspace-id") || "").trim();
    this._clear();
    if (!workspaceId) {
      return;
    }
    const endpoint = endpointOf(this);
    const generation = ++this._generation;
    // Subscribe first, then list: a change between the two arrives on the stream.
    const feed = WorkspaceFeed.for(endpoint, workspaceId);
    this._stop = feed.subscribe({
      onPayload: (payload) => this._upsert(payload, null),
      onLost: (refusal) => this._lose(refusal),
    });
    for (const payload of feed.states.values()) {
      this._upsert(payload, null);
    }
    this._list(endpoint, workspaceId, generation);
  }

  async _list(endpoint, workspaceId, generation) {
    const limit = Math.max(1, Math.min(200, parseInt(this.getAttribute("limit"), 10) || 50));
    const query = `workspace_id=${encodeURIComponent(workspaceId)}&status=pending,running&limit=${limit}`;
    let answer;
    try {
      answer = await getJson(endpoint, `/api/tasks?${query}`);
    } catch {
      return; // unreachable: the stream lists what changes once it is back
    }
    if (generation !== this._generation) {
      return;
    }
    if (!answer.ok) {
      this._lose(refusalOf(answer));
      return;
    }
    for (const record of answer.body.tasks) {
      this._upsert(record, Date.parse(record.created_at));
    }
  }

  _unfollow() {
    this._generation++;
    if (this._stop) {
      this._stop();
      this._stop = null;
    }
  }

  _clear() {
    for (const row of this._rows.values()) {
      clearTimeout(row.timer);
    }
    this._rows.clear();
    this.$.list.replaceChildren();
    this.$.error.hidden = true;
    this.$.empty.hidden = false;
  }

  _upsert(payload, createdAt) {
    let row = this._rows.get(payload.id);
    if (!row) {
      if (TERMINAL.has(payload.status) && this._fadeRemainingMs(payload) <= 0) {
        return; // finished long enough ago to have faded already
      }
      row = this._addRow(payload, createdAt);
    } else if (Number.isFinite(createdAt) && row.key !== createdAt) {
      row.key = createdAt; // the list's order wins over the stream's guess
      this._place(row);
    }
    row.task.payload = payload;
    if (TERMINAL.has(payload.status) && !row.finishing) {
      row.finishing = true;
      row.el.part.add("finished");
      const remaining = this._fadeRemainingMs(payload);
      if (Number.isFinite(remaining)) {
        row.timer = setTimeout(() => this._fade(payload.id), Math.max(0, remaining));
      }
    }
  }

  /** Newest first: by `created_at` when the list gave it, else (the stream's payload has no
   * `created_at`) by when it started, else by when it was first seen: a spawn after the page
   * loaded is the newest there is. */
  _addRow(payload, createdAt) {
    const el = document.createElement("li");
    el.setAttribute("part", "row");
    el.dataset.taskId = payload.id;
    const task = document.createElement("praxiom-task");
    task.setAttribute("exportparts", TASK_PARTS);
    task.payload = payload; // before it connects: no status request of its own
    for (const name of ["base-url", "with-credentials", "workspace-id"]) {
      if (this.hasAttribute(name)) {
        task.setAttribute(name, this.getAttribute(name));
      }
    }
    task.setAttribute("task-id", payload.id);
    el.append(task);
    const started = Date.parse(payload.started_at);
    const seen = Number.isFinite(started) ? started : Date.now();
    const key = Number.isFinite(createdAt) ? createdAt : seen;
    const row = { el, task, key, finishing: false, timer: null };
    this._rows.set(payload.id, row);
    this._place(row);
    this.$.empty.hidden = true;
    return row;
  }

  _place(row) {
    let before = null;
    for (const other of this._rows.values()) {
      if (other !== row && other.key < row.key && (!before || other.key > before.key)) {
        before = other;
      }
    }
    this.$.list.insertBefore(row.el, before ? before.el : null);
  }

  _fadeRemainingMs(payload) {
    const seconds = Number(this.getAttribute("fade-after") ?? 30);
    if (!(seconds > 0)) {
      return Infinity; // 0 or junk: finished tasks stay
    }
    const ended = Date.parse(payload.completed_at);
    const since = Number.isFinite(ended) ? Math.max(0, Date.now() - ended) : 0;
    return seconds * 1000 - since;
  }

  _fade(taskId) {
    const row = this._rows.get(taskId);
    if (!row) {
      return;
    }
    row.el.classList.add("fading");
    const duration = parseFloat(getComputedStyle(row.el).transitionDuration) || 0;
    row.timer = setTimeout(() => {
      row.el.remove();
      this._rows.delete(taskId);
      this.$.empty.hidden = this._rows.size > 0;
    }, duration * 1000);
  }

  _lose(refusal) {
    this._unfollow();
    this.$.error.textContent = refusal.message;
    this.$.error.hidden = false;
    this.dispatchEvent(
      new CustomEvent("praxiom-error", { detail: refusal, bubbles: true, composed: true }),
    );
  }
}

if (!customElements.get("praxiom-task")) {
  customElements.define("praxiom-task", PraxiomTask);
}
if (!customElements.get("praxiom-workspace-tasks")) {
  customElements.define("praxiom-workspace-tasks", PraxiomWorkspaceTasks);
}
