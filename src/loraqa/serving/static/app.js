// The loraqa page: ask a question about a context, see the answer highlighted in it.
// Plain DOM, no build step. Text from the server or the user only ever goes in via textContent.
"use strict";

const SAMPLES = [
  {
    title: "Avalon (made-up town)",
    text: "The town of Avalon was founded in 1800 by Ada. It lies near a river and has a market.",
  },
  {
    title: "Normandy",
    text:
      "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, " +
      "a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland " +
      "and Norway who, under their leader Rollo, agreed to swear fealty to King Charles III of West Francia.",
  },
  {
    title: "Photosynthesis",
    text:
      "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide " +
      "to make glucose and oxygen. It takes place mainly in the chloroplasts of leaf cells.",
  },
];

const $ = (id) => document.getElementById(id);
const history = [];

function fillSamples() {
  SAMPLES.forEach((sample, index) => {
    const option = document.createElement("option");
    option.value = String(index);
    option.textContent = sample.title;
    $("sample").appendChild(option);
  });
  $("sample").addEventListener("change", () => {
    const sample = SAMPLES[Number($("sample").value)];
    if (sample) $("context").value = sample.text;
  });
}

async function fillAdapters() {
  try {
    const response = await fetch("/v1/adapters");
    const body = await response.json();
    for (const adapter of body.adapters) {
      const option = document.createElement("option");
      option.value = adapter.name;
      const scores = adapter.f1 == null ? "" : `, F1 ${adapter.f1.toFixed(1)}`;
      option.textContent = `${adapter.name} (${adapter.formulation}${scores})`;
      option.selected = adapter.default;
      $("adapter").appendChild(option);
    }
  } catch (error) {
    setStatus(`could not list adapters: ${error}`, true);
  }
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// The context with the answer span wrapped in <mark>, built from text nodes only.
function highlight(container, context, start, end) {
  container.replaceChildren();
  if (start == null || end == null) {
    container.appendChild(document.createTextNode(context));
    return;
  }
  const mark = document.createElement("mark");
  mark.textContent = context.slice(start, end);
  container.append(document.createTextNode(context.slice(0, start)), mark, document.createTextNode(context.slice(end)));
  mark.scrollIntoView({ block: "nearest" });
}

function show(entry) {
  $("result").hidden = false;
  const a = entry.result;
  $("asked").textContent = entry.question;
  $("answer-text").textContent = a.no_answer ? "(no answer)" : a.answer;
  $("confidence").textContent = `confidence ${(100 * a.confidence).toFixed(1)}%`;
  $("confidence-bar").style.width = `${Math.round(100 * a.confidence)}%`;
  const where = a.start == null && !a.no_answer ? " · not found verbatim in the context" : "";
  $("meta").textContent = `${a.adapter} · ${a.latency_ms.toFixed(0)} ms${where}`;
  highlight($("highlighted"), entry.context, a.start, a.end);
}

function addHistory(entry) {
  history.unshift(entry);
  $("history-empty").hidden = true;
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.textContent = entry.question;
  button.addEventListener("click", () => show(entry));
  const answer = document.createElement("span");
  answer.className = "meta";
  answer.textContent = ` → ${entry.result.no_answer ? "(no answer)" : entry.result.answer} (${(100 * entry.result.confidence).toFixed(0)}%, ${entry.result.adapter})`;
  item.append(button, answer);
  $("history").prepend(item);
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  const context = $("context").value;
  if (!context.trim()) return setStatus("paste or pick a context first", true);
  if (!question) return setStatus("type a question", true);
  $("ask").disabled = true;
  setStatus("thinking…");
  try {
    const response = await fetch("/v1/answer", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question, context, adapter: $("adapter").value || null }),
    });
    const body = await response.json();
    if (!response.ok) return setStatus(body.error || `error ${response.status}`, true);
    const entry = { question, context, result: body };
    addHistory(entry);
    show(entry);
    setStatus("");
  } catch (error) {
    setStatus(`request failed: ${error}`, true);
  } finally {
    $("ask").disabled = false;
  }
}

fillSamples();
fillAdapters();
$("ask-form").addEventListener("submit", ask);
