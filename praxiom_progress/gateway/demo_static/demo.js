// praxiom-progress demo page. No framework, no build step.
//
// Spawn and cancel are fetch() calls; the session cookie authenticates them (this script
// never sees a token: the cookie is HttpOnly). Everything live is the browser component's
// (/static/praxiom-progress.js): each card holds a <praxiom-task> that shares the page's one
// workspace stream, and this script only reacts to its events (praxiom-progress,
// praxiom-done, praxiom-error) to colour the card, show the outcome and hide Cancel.
"use strict";

(() => {
  const TERMINAL = ["completed", "failed", "cancelled"];
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

  /** taskId -> { el, task, status } */
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
      addCard(body.id, body);
      remember(body.id);
    } catch (err) {
      showFormError(`Could not reach the gateway: ${err.message}`);
    } finally {
      spawnButton.disabled = false;
    }
  }

  // -- the cards: a <praxiom-task> each, and what its events say -----------------------------

  /** A card for the task; `payload` (the spawn's answer) is shown at once, else the element
   * finds the task's state itself. */
  function addCard(taskId, payload) {
    // importNode: the elements are made in this document, so <praxiom-task> is upgraded now.
    const el = document.importNode(cardTemplate.content, true).firstElementChild;
    el.dataset.taskId = taskId;
    const idEl = el.querySelector("[data-testid=task-id]");
    idEl.textContent = taskId.slice(0, 8);
    idEl.title = taskId;
    const task = el.querySelector("praxiom-task");
    const card = { el, task, status: null };
    cards.set(taskId, card);
    task.addEventListener("praxiom-progress", (event) => showStatus(card, event.detail.status));
    task.addEventListener("praxiom-done", (event) => showOutcome(card, event.detail));
    task.addEventListener("praxiom-error", (event) => lost(taskId, event.detail));
    el.querySelector("[data-testid=cancel]").addEventListener("click", () => cancelTask(taskId));
    if (payload) {
      task.payload = payload;
    }
    task.setAttribute("workspace-id", config.workspace_id);
    task.setAttribute("task-id", taskId);
    list.prepend(el);
    noTasks.hidden = true;
  }

  function showStatus(card, status) {
    card.status = status;
    card.el.dataset.status = status;
    const cancel = card.el.querySelector("[data-testid=cancel]");
    cancel.disabled = TERMINAL.includes(status);
    cancel.hidden = TERMINAL.includes(status);
  }

  function setOutcome(card, text) {
    const outcome = card.el.querySelector("[data-testid=outcome]");
    outcome.textContent = text;
    outcome.hidden = !text;
  }

  function showOutcome(card, data) {
    showStatus(card, data.status);
    if (data.status === "completed") {
      const documents = (data.result_data && data.result_data.document_ids) || [];
      const summary = (data.result_data && data.result_data.summary) || "Done.";
      const count = documents.length === 1 ? "1 document" : `${documents.length} documents`;
      setOutcome(card, `Completed: ${summary} (${count})`);
    } else if (data.status === "cancelled") {
      setOutcome(card, `Cancelled at ${data.progress_pct}% (${data.phase}); nothing more will run.`);
    } else {
      setOutcome(card, `Failed: ${data.error || `Task ${data.status}`}`);
    }
  }

  /** The task is gone, or another session's (a remembered id after a reload): drop its card;
   * access lost while it ran: say so. */
  function lost(taskId, refusal) {
    const card = cards.get(taskId);
    if (!card) {
      return;
    }
    if (card.status === null) {
      card.el.remove();
      cards.delete(taskId);
      forget([taskId]);
      noTasks.hidden = cards.size > 0;
      return;
    }
    setOutcome(card, `No longer shown: ${refusal.message}`);
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
      // terminal state; handing it to the element now just saves the wait.
      const payload = response.status === 202 ? body : response.status === 409 && body && body.task;
      if (payload) {
        card.task.payload = payload;
      } else {
        setOutcome(card, `Cancel refused: ${describeRefusal(response, body)}`);
        button.disabled = false;
      }
    } catch (err) {
      setOutcome(card, `Could not reach the gateway: ${err.message}`);
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

  /** Each remembered task gets its card back; its element finds its state (a task that is
   * gone or not this session's answers 404 or 403, and its card goes). */
  function resume() {
    for (const taskId of remembered()) {
      addCard(taskId, null);
    }
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
