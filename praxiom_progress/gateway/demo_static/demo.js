// praxiom-progress demo page. No framework, no build step.
//
// Spawn and cancel are fetch() calls; the session cookie authenticates them (this script
// never sees a token: the cookie is HttpOnly). Progress follows the spec's JavaScript client
// (spec: "JavaScript client") exactly; only the URL is relative to this origin.
"use strict";

(() => {
  const TERMINAL = ["completed", "failed", "cancelled"];
  const STATUS_ICONS = {
    pending: "…",
    running: "▶",
    completed: "✓",
    failed: "✕",
    cancelled: "⊘",
  };
  const STORAGE_KEY = "praxiom-demo-tasks"; // this tab's task ids, to resume after a reload
  const MAX_REMEMBERED = 50;

  const config = JSON.parse(document.getElementById("demo-config").textContent);
  const form = document.getElementById("spawn-form");
  const typeSelect = document.getElementById("task-type");
  const paceSelect = document.getElementById("pace");
  const failSelect = document.getElementById("fail-at");
  const spawnButton = document.getElementById("spawn");
  const formError = document.getElementById("form-error");
  const list = document.getElementById("tasks");
  const noTasks = document.getElementById("no-tasks");
  const clearButton = document.getElementById("clear-finished");
  const cardTemplate = document.getElementById("task-card");

  /** taskId -> { el, version, status, source } */
  const cards = new Map();

  // -- the form ------------------------------------------------------------------------------

  function fillFailPoints() {
    const points = config.fail_points[typeSelect.value] || [];
    const options = [new Option("Never", "")];
    for (const point of points) {
      options.push(new Option(`At ${point.replaceAll("_", " ")}`, point));
    }
    failSelect.replaceChildren(...options);
    failSelect.disabled = points.length === 0;
  }

  function showFormError(text) {
    formError.textContent = text;
    formError.hidden = !text;
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }

  function describeRefusal(response, body) {
    if (response.status === 401) {
      return "Your demo session has expired — reload the page to sign in again.";
    }
    const error = body && body.error;
    if (!error) {
      return `The gateway answered ${response.status} ${response.statusText}`.trim();
    }
    const fields = body.fields;
    const detail = fields ? ` (${JSON.stringify(fields)})` : "";
    return `${error.message}${detail}`;
  }

  async function spawnTask(event) {
    event.preventDefault();
    showFormError("");
    const params = { step_seconds: Number(paceSelect.value) };
    if (failSelect.value) {
      params.fail_at = failSelect.value;
    }
    const request = {
      task_type: typeSelect.value,
      workspace_id: config.workspace_id,
      params,
    };
    spawnButton.disabled = true;
    try {
      const response = await fetch("/api/tasks/spawn", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(request),
      });
      const body = await readJson(response);
      if (!response.ok) {
        showFormError(describeRefusal(response, body));
        return;
      }
      addCard(body);
      remember(body.id);
      watch(body.id);
    } catch (err) {
      showFormError(`Could not reach the gateway: ${err.message}`);
    } finally {
      spawnButton.disabled = false;
    }
  }

  // -- the cards -----------------------------------------------------------------------------

  function addCard(payload) {
    const el = cardTemplate.content.firstElementChild.cloneNode(true);
    el.dataset.taskId = payload.id;
    el.querySelector("[data-testid=task-type]").textContent = payload.task_type;
    const idEl = el.querySelector("[data-testid=task-id]");
    idEl.textContent = payload.id.slice(0, 8);
    idEl.title = payload.id;
    el.querySelector(".bar").setAttribute("aria-label", `Progress of ${payload.task_type}`);
    el.querySelector("[data-testid=cancel]").addEventListener("click", () => cancelTask(payload.id));
    const card = { el, version: 0, status: null, source: null };
    cards.set(payload.id, card);
    list.prepend(el);
    noTasks.hidden = true;
    updateUI(payload.id, {
      status: payload.status,
      phase: payload.phase,
      pct: payload.progress_pct,
      message: payload.message,
      version: payload.version,
    });
    if (TERMINAL.includes(payload.status)) {
      showOutcome(payload.id, payload);
    }
  }

  /** Render one state; a state older than the one shown is ignored. */
  function updateUI(taskId, { status, phase, pct, message, version }) {
    const card = cards.get(taskId);
    if (!card || (typeof version === "number" && version < card.version)) {
      return;
    }
    card.version = version || card.version;
    card.status = status;
    const { el } = card;
    el.dataset.status = status;
    el.querySelector("[data-testid=status]").textContent = status;
    el.querySelector(".status-icon").textContent = STATUS_ICONS[status] || "";
    el.querySelector("[data-testid=pct]").textContent = `${pct}%`;
    el.querySelector("[data-testid=phase]").textContent = phase;
    el.querySelector("[data-testid=message]").textContent = message;
    el.querySelector(".bar").setAttribute("aria-valuenow", String(pct));
    el.querySelector(".bar-fill").style.width = `${pct}%`;
    const cancel = el.querySelector("[data-testid=cancel]");
    cancel.disabled = TERMINAL.includes(status);
    cancel.hidden = TERMINAL.includes(status);
  }

  function setOutcome(taskId, text) {
    const card = cards.get(taskId);
    if (!card) {
      return;
    }
    const outcome = card.el.querySelector("[data-testid=outcome]");
    outcome.textContent = text;
    outcome.hidden = !text;
  }

  function onComplete(taskId, resultData) {
    const documents = (resultData && resultData.document_ids) || [];
    const summary = (resultData && resultData.summary) || "Done.";
    const count = documents.length === 1 ? "1 document" : `${documents.length} documents`;
    setOutcome(taskId, `Completed: ${summary} (${count})`);
  }

  function onError(taskId, error) {
    const card = cards.get(taskId);
    if (card && card.status === "cancelled") {
      const pct = card.el.querySelector("[data-testid=pct]").textContent;
      const phase = card.el.querySelector("[data-testid=phase]").textContent;
      setOutcome(taskId, `Cancelled at ${pct} (${phase}); nothing more will run.`);
    } else {
      setOutcome(taskId, `Failed: ${error}`);
    }
  }

  function showOutcome(taskId, data) {
    if (data.status === "completed") {
      onComplete(taskId, data.result_data);
    } else {
      onError(taskId, data.error || `Task ${data.status}`);
    }
  }

  // -- progress: the spec's JavaScript client ------------------------------------------------

  function watch(taskId) {
    const source = new EventSource(`/api/tasks/${taskId}/progress`, { withCredentials: true });
    cards.get(taskId).source = source;

    source.onmessage = (event) => {
      const data = JSON.parse(event.data);
      updateUI(taskId, {
        status: data.status,
        phase: data.phase,
        pct: data.progress_pct,
        message: data.message,
        version: data.version,
      });

      if (["completed", "failed", "cancelled"].includes(data.status)) {
        source.close();
        if (data.status === "completed") {
          // Final payload is already in data.result_data,
          // or fetch via GET /api/tasks/{taskId} for the canonical row
          onComplete(taskId, data.result_data);
        } else {
          onError(taskId, data.error || `Task ${data.status}`);
        }
      }
    };

    source.onerror = (err) => {
      console.warn("SSE connection error — will auto-reconnect", err);
      // EventSource reconnects automatically; no action needed
    };
  }

  // -- cancel --------------------------------------------------------------------------------

  async function cancelTask(taskId) {
    const card = cards.get(taskId);
    const button = card.el.querySelector("[data-testid=cancel]");
    button.disabled = true;
    try {
      const response = await fetch(`/api/tasks/${taskId}/cancel`, {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await readJson(response);
      // 202: the cancelled task; 409: it had already finished. The stream brings the same
      // terminal state and closes; showing it now just saves a round trip.
      const payload = response.status === 202 ? body : response.status === 409 && body && body.task;
      if (payload) {
        updateUI(taskId, {
          status: payload.status,
          phase: payload.phase,
          pct: payload.progress_pct,
          message: payload.message,
          version: payload.version,
        });
        showOutcome(taskId, payload);
      } else {
        setOutcome(taskId, `Cancel refused: ${describeRefusal(response, body)}`);
        button.disabled = false;
      }
    } catch (err) {
      setOutcome(taskId, `Could not reach the gateway: ${err.message}`);
      button.disabled = false;
    }
  }

  // -- resuming after a reload: each stream starts with the task's current state -------------

  function remembered() {
    try {
      const ids = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "[]");
      return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
    } catch {
      return [];
    }
  }

  function store(ids) {
    try {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(ids.slice(-MAX_REMEMBERED)));
    } catch {
      // storage unavailable (private mode, quota): resuming is a nicety
    }
  }

  function remember(taskId) {
    store([...remembered().filter((id) => id !== taskId), taskId]);
  }

  function forget(taskIds) {
    const gone = new Set(taskIds);
    store(remembered().filter((id) => !gone.has(id)));
  }

  async function resume() {
    const stale = [];
    for (const taskId of remembered()) {
      try {
        const response = await fetch(`/api/tasks/${encodeURIComponent(taskId)}/status`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (!response.ok) {
          stale.push(taskId); // gone, or another session's: nothing to show
          continue;
        }
        const payload = await response.json();
        addCard(payload);
        if (!TERMINAL.includes(payload.status)) {
          watch(payload.id);
        }
      } catch {
        // the gateway is unreachable; keep the id for the next reload
      }
    }
    forget(stale);
  }

  function clearFinished() {
    const finished = [];
    for (const [taskId, card] of cards) {
      if (TERMINAL.includes(card.status)) {
        card.el.remove();
        cards.delete(taskId);
        finished.push(taskId);
      }
    }
    forget(finished);
    noTasks.hidden = cards.size > 0;
  }

  typeSelect.addEventListener("change", fillFailPoints);
  form.addEventListener("submit", spawnTask);
  clearButton.addEventListener("click", clearFinished);
  fillFailPoints();
  resume();
})();
