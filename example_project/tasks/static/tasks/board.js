// The board page: every list is a subscription of reactive.js over one socket.
// Writes go to the REST API; their results come back as pushes like anyone else's.
import { ReactiveClient } from "../reactive_celery/reactive.js";

const $ = (id) => document.getElementById(id);
const client = new ReactiveClient("/ws/reactive/");

// --- Connection state --------------------------------------------------------

const LABELS = { connecting: "connecting…", open: "live", reconnecting: "reconnecting…", closed: "closed" };

function showConnection(state) {
  document.body.dataset.connection = state; // CSS dims the lists outside "open"
  $("connection").textContent = LABELS[state] || state;
}
client.addStateListener(showConnection);
showConnection(client.state);
window.addEventListener("online", () => client.reconnect());

function showProblem(text) {
  $("problem").textContent = text || "";
  $("problem").hidden = !text;
}

// --- Live lists --------------------------------------------------------------

/** One list on the page, following the view at `url`; `show(url)` switches views. */
class LiveList {
  constructor(name, render) {
    this.name = name;
    this.render = render;
    this.subscription = null;
    this.generation = 0;
  }

  async show(url) {
    const generation = ++this.generation;
    const previous = this.subscription;
    this.subscription = null;
    previous?.close();
    try {
      const subscription = await client.subscribe(url, {
        onChange: (items, diff) => generation === this.generation && this.render(items, diff),
        onError: (error) => showProblem(`${this.name} stopped (${error.code}): ${error.message}`),
      });
      // A newer show() started while this one waited: keep only the newest.
      if (generation === this.generation) this.subscription = subscription;
      else subscription.close();
    } catch (error) {
      if (error.code !== "closed") showProblem(`${this.name}: ${error.code}: ${error.message}`);
    }
  }
}

/** Primary keys of the items a diff frame added or changed, to flash them. */
function touched(diff) {
  return new Set([...(diff?.added || []), ...(diff?.changed || [])].map((entry) => entry.item.id));
}

function taskList(listId, countId) {
  const template = $("task").content.firstElementChild;
  return (tasks, diff) => {
    const fresh = touched(diff);
    $(listId).replaceChildren(
      ...tasks.map((task) => {
        const li = template.cloneNode(true);
        li.dataset.id = task.id;
        li.classList.toggle("done", task.done);
        li.classList.toggle("fresh", fresh.has(task.id));
        li.querySelector("input").checked = task.done;
        li.querySelector(".ref").textContent = `#${task.id}`;
        li.querySelector(".title").textContent = task.title; // text, never HTML
        li.querySelector(".owner").textContent = task.owner_username || "";
        return li;
      }),
    );
    $(countId).textContent = tasks.length;
    const empty = $(`${listId}-empty`);
    if (empty) empty.hidden = tasks.length > 0;
  };
}

function statusRows(rows, diff) {
  const fresh = new Set((diff?.changed || []).map((entry) => entry.item.name));
  $("server-status").replaceChildren(
    ...rows.map((row) => {
      const div = document.createElement("div");
      div.dataset.name = row.name;
      div.classList.toggle("fresh", fresh.has(row.name));
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = row.name;
      dd.textContent = row.value ?? "–";
      div.append(dt, dd);
      return div;
    }),
  );
}

const todo = new LiveList("To do", taskList("todo", "todo-count"));
const done = new LiveList("Done", taskList("done", "done-count"));

// --- Owner filter: part of the observed URL -----------------------------------

const filter = $("owner-filter");
filter.value = new URLSearchParams(location.search).get("owner") || "";

function showBoard() {
  const owner = filter.value ? `&owner=${encodeURIComponent(filter.value)}` : "";
  todo.show(`/api/tasks/?done=false${owner}`);
  done.show(`/api/tasks/?done=true${owner}`);
}

filter.addEventListener("change", () => {
  const query = new URLSearchParams(location.search);
  if (filter.value) query.set("owner", filter.value);
  else query.delete("owner");
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
  showBoard();
});

showBoard();
if ($("mine")) new LiveList("My tasks", taskList("mine", "mine-count")).show("/api/tasks/mine/");
new LiveList("Server status", statusRows).show("/api/status/");

// --- Writes through the REST API ---------------------------------------------

/** Send one write; returns true when the server took it, else shows why. */
async function api(method, url, body) {
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        "Content-Type": "application/json",
        "X-CSRFToken": document.querySelector("meta[name=csrf-token]").content,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    showProblem(`${ACTIONS[method] || "The request"} failed: the server cannot be reached (${error.message}).`);
    return false;
  }
  if (!response.ok) showProblem(await describeFailure(method, response));
  else showProblem("");
  return response.ok;
}

const ACTIONS = { POST: "Adding the task", PATCH: "Changing the task", DELETE: "Deleting the task" };

/**
 * A refused write in words: DRF answers {"detail": "..."} or {"field": ["..."]};
 * anything else (an HTML error page, an empty body) is summed up by its status.
 */
async function describeFailure(method, response) {
  const action = ACTIONS[method] || "The request";
  const text = await response.text();
  let reasons = [];
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") {
      reasons = Object.entries(body).map(([field, value]) => {
        const message = [].concat(value).join(" ");
        return field === "detail" || field === "non_field_errors" ? message : `${field}: ${message}`;
      });
    }
  } catch {
    // not JSON: fall back to the status below
  }
  if (!reasons.length) reasons = [`the server answered ${response.status} ${response.statusText}`.trim()];
  return `${action} failed: ${reasons.join("; ")}`;
}

$("add-task").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const owner = form.elements.owner.value;
  const created = await api("POST", "/api/tasks/", {
    title: form.elements.title.value,
    owner: owner ? Number(owner) : null,
  });
  if (created) form.elements.title.value = "";
});

document.querySelector("main").addEventListener("click", (event) => {
  const li = event.target.closest("li[data-id]");
  if (!li) return;
  const url = `/api/tasks/${li.dataset.id}/`;
  if (event.target.matches("input[type=checkbox]")) {
    api("PATCH", url, { done: event.target.checked });
  } else if (event.target.matches("button.delete")) {
    api("DELETE", url);
  }
});
