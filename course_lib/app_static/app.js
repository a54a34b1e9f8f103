// The page's logic: list the models, send a prompt to POST /api/stream, show the text as it
// arrives (server-sent events read from fetch's ReadableStream), and Stop by aborting the
// request, which makes the server stop generating.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("form"), modelSelect = $("model"), info = $("model-info");
const promptBox = $("prompt"), output = $("output"), shownPrompt = $("output-prompt"), shownNew = $("output-new");
const generateButton = $("generate"), stopButton = $("stop"), statusLine = $("status");

let models = [];
let running = null;  // the AbortController of the request in flight

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function setRunning(controller) {
  running = controller;
  generateButton.disabled = controller !== null || models.every((m) => !m.has_weights);
  stopButton.disabled = controller === null;
  output.classList.toggle("busy", controller !== null);
}

function showModelInfo() {
  const m = models.find((row) => row.name === modelSelect.value);
  info.replaceChildren();
  if (!m) return;
  const facts = [
    ["Parameters", m.parameters == null ? "?" : m.parameters.toLocaleString("en")],
    ["Model", m.model || "?"],
    ["Tokenizer", `${m.tokenizer || "?"}${m.vocab_size ? ` (${m.vocab_size.toLocaleString("en")} tokens)` : ""}`],
    ["Profile", m.profile || "-"],
    ["Corpus", m.corpus || "-"],
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

async function loadModels() {
  try {
    const response = await fetch("/api/models");
    models = await response.json();
    if (!response.ok) throw new Error(models.error || response.statusText);
  } catch (err) {
    setStatus(`Could not list the models: ${err.message}`, true);
    return;
  }
  modelSelect.replaceChildren();
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.has_weights ? m.name : `${m.name} (no weights: re-run its notebook)`;
    option.disabled = !m.has_weights;
    modelSelect.append(option);
  }
  const first = models.find((m) => m.has_weights);
  if (first) modelSelect.value = first.name;
  showModelInfo();
  setRunning(null);
  setStatus(first ? `${models.length} model(s) found. Type a prompt and press Generate.`
                  : "No trained checkpoints yet: run `make course` (or the notebooks), then reload.", !first);
}

// Empty optional fields are sent as null (= off / random seed); the server checks every value.
function numberOrNull(id) {
  if ($(id).validity.badInput) throw new Error(`${id} must be a number (or empty where that is allowed).`);
  const text = $(id).value.trim();
  return text === "" ? null : Number(text);
}

function requestBody() {
  return {
    model: modelSelect.value,
    prompt: promptBox.value,
    max_new_tokens: numberOrNull("max_new_tokens"),
    temperature: numberOrNull("temperature"),
    top_k: numberOrNull("top_k"),
    top_p: numberOrNull("top_p"),
    seed: numberOrNull("seed"),
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
    setStatus(`Error: ${err.message}`, true);
    return;
  }
  const controller = new AbortController();
  setRunning(controller);
  shownPrompt.textContent = body.prompt;
  shownNew.textContent = "";
  setStatus(`Asking ${body.model}\u2026`);
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
          setStatus(`Generating with ${event.data.model} (seed ${event.data.seed})\u2026`);
        } else if (event.name === "token") {
          shownNew.textContent += event.data.text;
          pieces += 1;
        } else if (event.name === "done") {
          const rate = event.data.pieces_per_s ? `, ${event.data.pieces_per_s} per second` : "";
          setStatus(`Done: ${event.data.pieces} tokens in ${event.data.elapsed_s.toFixed(2)} s${rate}. ` +
                    `Seed ${event.data.seed} (type it in Seed to get the same text again).`);
        } else if (event.name === "error") {
          throw new Error(event.data.error);
        }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") setStatus(`Stopped after ${pieces} tokens.`);
    else setStatus(`Error: ${err.message}`, true);
  } finally {
    setRunning(null);
  }
}

form.addEventListener("submit", (event) => { event.preventDefault(); generate(); });
stopButton.addEventListener("click", () => running && running.abort());
modelSelect.addEventListener("change", showModelInfo);
promptBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); generate(); }
});

loadModels();
