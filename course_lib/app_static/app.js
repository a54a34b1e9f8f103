// The page's logic: list the models, continue a prompt through POST /api/stream (the text shows
// as it arrives: server-sent events read from fetch's ReadableStream; Stop aborts the request,
// which makes the server stop generating), and the fine-tuned model's three task forms.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("form"), modelSelect = $("model"), info = $("model-info");
const promptBox = $("prompt"), output = $("output"), shownPrompt = $("output-prompt"), shownNew = $("output-new");
const generateButton = $("generate"), stopButton = $("stop"), greedyBox = $("greedy");
const TASKS = ["sorting", "spell", "chat"];
const CHAT_HISTORY = 20;  // turns kept on the page

let models = [];
let taskInfo = null;  // GET /api/tasks: halls, characters, lexicon
let running = null;   // the AbortController of the generation in flight
let busyTask = null;  // the task whose request is in flight

function setStatus(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", isError);
}

function selectedModel() {
  return models.find((row) => row.name === modelSelect.value);
}

// --- the model list ------------------------------------------------------------------------

function optionLabel(m) {
  if (m.broken) return `${m.name} (damaged: ${m.broken})`;
  if (!m.ready) return `${m.name} (no weights: re-run its notebook)`;
  const notes = [];
  if (m.source === "reference") notes.push("reference");
  if (m.tasks.length) notes.push(`tasks: ${m.tasks.join(", ")}`);
  return notes.length ? `${m.name} (${notes.join("; ")})` : m.name;
}

function showModelInfo() {
  const m = selectedModel();
  info.replaceChildren();
  if (!m) return;
  const facts = [
    ["Parameters", m.parameters == null ? "?" : m.parameters.toLocaleString("en")],
    ["Model", m.model || "?"],
    ["Tokenizer", `${m.tokenizer || "?"}${m.vocab_size ? ` (${m.vocab_size.toLocaleString("en")} tokens)` : ""}`],
    ["Profile", m.profile || "-"],
    ["Corpus", m.corpus || "-"],
    ["Source", m.source === "reference" ? "shipped reference model" : "trained here"],
    ["Tasks", m.tasks.length ? m.tasks.join(", ") : "-"],
  ];
  for (const [term, value] of facts) {
    const row = document.createElement("div");
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    row.append(dt, dd);
    info.append(row);
  }
}

async function getJson(url) {
  const response = await fetch(url);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function loadModels() {
  try {
    models = await getJson("/api/models");
  } catch (err) {
    setStatus("status", `Could not list the models: ${err.message}`, true);
    return;
  }
  modelSelect.replaceChildren();
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = optionLabel(m);
    option.disabled = !m.ready;
    modelSelect.append(option);
  }
  const first = models.find((m) => m.ready);
  if (first) modelSelect.value = first.name;
  modelChanged();
  const damaged = models.filter((m) => m.broken).length;
  setStatus("status", first ? `${models.filter((m) => m.ready).length} model(s) ready` +
                               `${damaged ? `, ${damaged} damaged (shown greyed out)` : ""}. ` +
                               "Type a prompt and press Generate."
                            : "No trained checkpoints yet: run `make course` (or the notebooks), then reload.", !first);
}

async function loadTaskInfo() {
  try {
    taskInfo = await getJson("/api/tasks");
  } catch (err) {
    for (const task of TASKS) setStatus(`${task}-status`, `The task forms are off: ${err.message}`, true);
    return;
  }
  const select = $("chat-character");
  select.replaceChildren();
  for (const name of taskInfo.characters) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.append(option);
  }
  showLexicon();
  updateTaskForms();
}

function modelChanged() {
  showModelInfo();
  setRunning(running);
  updateTaskForms();
}

// --- tabs ----------------------------------------------------------------------------------

function showTab(name) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(selected));
    $(tab.getAttribute("aria-controls")).hidden = !selected;
  }
}

for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => showTab(tab.id.slice(4)));
}

// --- continue text -------------------------------------------------------------------------

function setRunning(controller) {
  running = controller;
  const m = selectedModel();
  generateButton.disabled = controller !== null || !(m && m.ready);
  stopButton.disabled = controller === null;
  output.classList.toggle("busy", controller !== null);
}

// Greedy takes the most likely token: temperature, top-k and top-p do not apply then.
function greedyChanged() {
  for (const id of ["temperature", "top_k", "top_p"]) $(id).disabled = greedyBox.checked;
}

// Empty optional fields are sent as null (= off / random seed); the server checks every value.
function numberOrNull(id) {
  if ($(id).validity.badInput) throw new Error(`${id} must be a number (or empty where that is allowed).`);
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

function requestBody() {
  const greedy = greedyBox.checked;
  return {
    model: modelSelect.value,
    prompt: promptBox.value,
    max_new_tokens: numberOrNull("max_new_tokens"),
    temperature: greedy ? null : numberOrNull("temperature"),
    top_k: greedy ? null : numberOrNull("top_k"),
    top_p: greedy ? null : numberOrNull("top_p"),
    seed: numberOrNull("seed"),
    greedy,
  };
}

// Split a server-sent-events buffer into complete events; return [events, rest of the buffer].
function parseEvents(buffer) {
  const events = [];
  const blocks = buffer.split("\n\n");
  const rest = blocks.pop();
  for (const block of blocks) {
    let name = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) name = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    events.push({ name, data: data ? JSON.parse(data) : {} });
  }
  return [events, rest];
}

async function generate() {
  if (running) return;
  let body;
  try {
    body = requestBody();
  } catch (err) {
    setStatus("status", `Error: ${err.message}`, true);
    return;
  }
  const controller = new AbortController();
  setRunning(controller);
  shownPrompt.textContent = body.prompt;
  shownNew.textContent = "";
  setStatus("status", `Asking ${body.model}\u2026`);
  let pieces = 0;
  try {
    const response = await fetch("/api/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({ error: response.statusText }));
      if (problem.field && $(problem.field)) $(problem.field).focus();
      throw new Error(problem.error);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let events;
      [events, buffer] = parseEvents(buffer + value);
      for (const event of events) {
        if (event.name === "start") {
          setStatus("status", `Generating with ${event.data.model} (seed ${event.data.seed})\u2026`);
        } else if (event.name === "token") {
          shownNew.textContent += event.data.text;
          pieces += 1;
        } else if (event.name === "done") {
          const rate = event.data.pieces_per_s ? `, ${event.data.pieces_per_s} per second` : "";
          const repeat = body.greedy ? "Greedy: the same prompt always gives this text."
                                     : `Seed ${event.data.seed} (type it in Seed to get the same text again).`;
          setStatus("status", `Done: ${event.data.pieces} tokens in ${event.data.elapsed_s.toFixed(2)} s${rate}. ${repeat}`);
        } else if (event.name === "error") {
          throw new Error(event.data.error);
        }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") setStatus("status", `Stopped after ${pieces} tokens.`);
    else setStatus("status", `Error: ${err.message}`, true);
  } finally {
    setRunning(null);
  }
}

form.addEventListener("submit", (event) => { event.preventDefault(); generate(); });
stopButton.addEventListener("click", () => running && running.abort());
modelSelect.addEventListener("change", modelChanged);
greedyBox.addEventListener("change", greedyChanged);
promptBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); generate(); }
});

// --- the tasks -----------------------------------------------------------------------------

// A task form works when the selected model was fine-tuned on that task; otherwise its note
// says which models can do it.
function updateTaskForms() {
  const m = selectedModel();
  for (const task of TASKS) {
    const panel = $(`panel-${task}`), note = panel.querySelector(".task-note");
    const offers = Boolean(m && m.ready && m.tasks.includes(task));
    const able = models.filter((row) => row.ready && row.tasks.includes(task)).map((row) => row.name);
    note.hidden = offers;
    note.textContent = offers ? "" : `${m ? `"${m.name}" was not fine-tuned on this task. ` : ""}` +
      (able.length ? `Pick a fine-tuned model above: ${able.join(", ")}.`
                   : "No fine-tuned model yet: run notebooks/11_finetuning.ipynb (or `make course`).");
    $(`${task}-submit`).disabled = !offers || busyTask !== null || taskInfo === null;
  }
}

async function askTask(task, fields) {
  if (busyTask) return null;
  busyTask = task;
  updateTaskForms();
  setStatus(`${task}-status`, `Asking ${modelSelect.value}\u2026`);
  try {
    const response = await fetch(`/api/task/${task}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: modelSelect.value, ...fields }),
    });
    const data = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) {
      const input = data.field && $(`${task}-${data.field}`);
      if (input) input.focus();
      throw new Error(data.error);
    }
    setStatus(`${task}-status`, `Answered by ${data.model} in ${data.elapsed_s.toFixed(2)} s. ` +
                                `Its prompt: ${JSON.stringify(data.prompt)}`);
    return data;
  } catch (err) {
    setStatus(`${task}-status`, `Error: ${err.message}`, true);
    return null;
  } finally {
    busyTask = null;
    updateTaskForms();
  }
}

$("sorting-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = await askTask("sorting", { description: $("sorting-description").value });
  if (!data) return;
  $("sorting-hall").textContent = data.hall;
  const bars = $("sorting-bars");
  bars.replaceChildren();
  for (const [hall, p] of Object.entries(data.probabilities)) {
    const item = document.createElement("li");
    item.classList.toggle("best", hall === data.hall);
    const name = document.createElement("span"), bar = document.createElement("span"), value = document.createElement("span");
    name.className = "name";
    name.textContent = hall;
    bar.className = "bar";
    bar.style.setProperty("--share", `${(100 * p).toFixed(1)}%`);
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    item.append(name, bar, value);
    bars.append(item);
  }
  $("sorting-result").hidden = false;
});

$("spell-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = await askTask("spell", { effect: $("spell-effect").value });
  if (!data) return;
  $("spell-incantation").textContent = data.incantation || "(no word: the model ended its answer at once)";
  const parts = $("spell-parts");
  parts.replaceChildren();
  if (data.parts) {
    for (const part of data.parts) {
      const item = document.createElement("li");
      const morpheme = document.createElement("strong");
      morpheme.textContent = part.morpheme;
      item.append(morpheme, ` (${part.kind}): ${part.meaning}`);
      parts.append(item);
    }
  } else if (data.incantation) {
    const item = document.createElement("li");
    item.textContent = "It does not split into the lexicon's [ro] + root + ending: the model invented its own word.";
    parts.append(item);
  }
  $("spell-result").hidden = false;
});

function showLexicon() {
  const table = document.createElement("table");
  for (const entry of taskInfo.lexicon) {
    const row = table.insertRow();
    for (const text of [entry.kind, entry.morpheme, entry.meaning]) row.insertCell().textContent = text;
  }
  $("spell-lexicon").replaceChildren(table);
}

function addChatTurn(speaker, text, kind) {
  const log = $("chat-log");
  const item = document.createElement("li");
  item.className = kind;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = speaker;
  const said = document.createElement("span");
  said.className = "said";
  said.textContent = text;
  item.append(who, said);
  log.append(item);
  while (log.children.length > 2 * CHAT_HISTORY) log.firstElementChild.remove();
  item.scrollIntoView({ block: "nearest" });
}

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const character = $("chat-character").value, message = $("chat-message").value;
  const data = await askTask("chat", { character, message });
  if (!data) return;
  addChatTurn(`You to ${data.character}`, data.message, "user");
  addChatTurn(data.character, data.reply || "(no reply: the model ended its answer at once)", "character");
  $("chat-message").value = "";
  $("chat-message").focus();
});

$("chat-clear").addEventListener("click", () => {
  $("chat-log").replaceChildren();
  setStatus("chat-status", "");
});

greedyChanged();
loadModels().then(loadTaskInfo);
