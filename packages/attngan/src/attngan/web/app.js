// The attngan-serve page: POST /generate with stages and attention, then draw the answer.
"use strict";

const $ = (id) => document.getElementById(id);

function png(b64, cls, alt) {
  const img = document.createElement("img");
  img.src = "data:image/png;base64," + b64;
  img.className = "pixel " + (cls || "");
  img.alt = alt || "";
  return img;
}

function figure(img, text) {
  const fig = document.createElement("figure");
  const cap = document.createElement("figcaption");
  cap.textContent = text;
  fig.append(img, cap);
  return fig;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function clearMessages() {
  $("error").hidden = true;
  $("error").textContent = "";
  $("note").hidden = true;
}

function stageNames(sizes) {
  return sizes.map((s, i) => `stage ${i + 1}: ${s} px`);
}

function renderResult(data, index, sizes) {
  const box = document.createElement("div");
  box.className = "result";
  const title = document.createElement("h2");
  title.textContent = `Image ${index + 1} (seed ${data.seed + index})`;
  box.append(title);
  box.append(png(data.images[index], "final", `generated image ${index + 1}`));

  const stages = document.createElement("div");
  stages.className = "stages";
  const names = stageNames(sizes);
  data.stages[index].forEach((b64, k) => stages.append(figure(png(b64, "stage", names[k]), names[k])));
  box.append(stages);

  data.attention[index].forEach((stage, k) => {
    const part = document.createElement("div");
    part.className = "attn";
    const head = document.createElement("h3");
    head.textContent = `word attention, stage ${k + 2} (${stage.size} x ${stage.size} grid)`;
    const words = document.createElement("div");
    words.className = "words";
    stage.maps.forEach((b64, w) => words.append(figure(png(b64, "word", data.words[w]), data.words[w])));
    part.append(head, words);
    box.append(part);
  });
  return box;
}

async function generate(event) {
  event.preventDefault();
  clearMessages();
  const body = { caption: $("caption").value, stages: true, attention: true };
  const seed = $("seed").value.trim();
  const count = $("count").value.trim();
  if (seed !== "") body.seed = Number(seed);
  if (count !== "") body.count = Number(count);
  $("generate").disabled = true;
  try {
    const response = await fetch("/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) {
      showError(data.error || `HTTP ${response.status}`);
      return;
    }
    const results = $("results");
    results.replaceChildren();
    const sizes = window.attnganSizes || [];
    data.images.forEach((_, i) => results.append(renderResult(data, i, sizes)));
    if (data.unknown_words.length) {
      $("note").textContent = "Not in the vocabulary, dropped: " + data.unknown_words.join(", ");
      $("note").hidden = false;
    }
    $("seed").placeholder = `random (last: ${data.seed})`;
  } catch (err) {
    showError("The server did not answer: " + err);
  } finally {
    $("generate").disabled = false;
  }
}

async function describe() {
  try {
    const health = await (await fetch("/health")).json();
    window.attnganSizes = health.stage_sizes;
    $("model").textContent = `Stages ${health.stage_sizes.join(" / ")} px, ` +
      `${health.vocab_size - 1} words, on ${health.device}. At most ${health.max_chars} ` +
      `characters and ${health.max_count} images.`;
    $("count").max = health.max_count;
    const vocab = await (await fetch("/vocabulary")).json();
    const shown = vocab.words.slice(0, 60).join(" ");
    $("words").textContent = "Words it knows: " + shown + (vocab.words.length > 60 ? " ..." : "");
  } catch (err) {
    showError("Cannot reach the server: " + err);
  }
}

$("form").addEventListener("submit", generate);
describe();
