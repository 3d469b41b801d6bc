// hccr serve: draw with pointer events (mouse, touch, pen), send the canvas to /api/predict, show the answer.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const widthInput = document.getElementById("width");
const result = document.getElementById("result");
const strokes = []; // every stroke kept, so undo can redraw the rest
let current = null;
let latest = 0; // number of the newest request: older answers arriving late are dropped

function paper() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function drawStroke(stroke) {
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = stroke.width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  const [first, ...rest] = stroke.points;
  if (!rest.length) { // a tap: a dot
    ctx.beginPath();
    ctx.arc(first[0], first[1], stroke.width / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.beginPath();
  ctx.moveTo(first[0], first[1]);
  for (const [x, y] of rest) ctx.lineTo(x, y);
  ctx.stroke();
}

function redraw() {
  paper();
  strokes.forEach(drawStroke);
}

function point(event) { // CSS pixels -> canvas pixels
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  pad.setPointerCapture(event.pointerId);
  current = { width: Number(widthInput.value), points: [point(event)], pointerId: event.pointerId };
  strokes.push(current);
  drawStroke(current);
  event.preventDefault();
});

pad.addEventListener("pointermove", (event) => {
  if (!current || event.pointerId !== current.pointerId) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of (events.length ? events : [event])) current.points.push(point(e));
  redraw();
});

function endStroke(event) {
  if (!current || event.pointerId !== current.pointerId) return;
  current = null;
  predictCanvas();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

widthInput.addEventListener("input", () => { document.getElementById("width-value").textContent = widthInput.value; });
document.getElementById("undo").addEventListener("click", () => {
  strokes.pop();
  redraw();
  if (strokes.length) predictCanvas(); else showEmpty();
});
document.getElementById("clear").addEventListener("click", () => {
  strokes.length = 0;
  redraw();
  showEmpty();
});

document.getElementById("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) predictFile(file);
});
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
  if (item) predictFile(item.getAsFile());
});

function predictCanvas() {
  send({ method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ image: pad.toDataURL("image/png") }) });
}

function predictFile(file) {
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  send({ method: "POST", body: form });
}

async function send(request) {
  const seq = ++latest;
  result.dataset.state = "busy";
  let answer;
  try {
    const response = await fetch("/api/predict", request);
    answer = await response.json();
    if (!response.ok) answer = { error: answer.error || `HTTP ${response.status}` };
  } catch (error) {
    answer = { error: String(error) };
  }
  if (seq !== latest) return;
  if (answer.error) showError(answer.error, seq); else show(answer, seq);
}

function percent(p) { return (100 * p).toFixed(1) + " %"; }

function show(answer, seq) {
  document.getElementById("character").textContent = answer.character;
  document.getElementById("value").textContent = String(answer.value);
  document.getElementById("confidence").textContent = percent(answer.confidence);
  const t = answer.timing_ms;
  document.getElementById("timing").textContent =
    `server ${t.total.toFixed(1)} ms (preprocess ${t.preprocess.toFixed(1)}, model ${t.model.toFixed(1)})`;
  const list = document.getElementById("top-k");
  list.replaceChildren(...answer.top_k.map((entry) => {
    const item = document.createElement("li");
    item.dataset.character = entry.character;
    item.dataset.value = String(entry.value);
    item.dataset.confidence = String(entry.confidence);
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = percent(entry.confidence).replace(" ", "");
    bar.append(fill);
    const cells = [entry.character, String(entry.value)].map((text) => {
      const cell = document.createElement("span");
      cell.textContent = text;
      return cell;
    });
    const label = document.createElement("span");
    label.className = "p";
    label.textContent = percent(entry.confidence);
    item.append(...cells, bar, label);
    return item;
  }));
  const glyph = document.getElementById("glyph");
  const framings = answer.framings || ["cell"];
  if (framings.length > 1) { // an ensemble: each member reads the drawing framed its own way
    glyph.src = answer.model_input;
    glyph.width = 128 * framings.length;
    document.getElementById("glyph-caption").textContent =
      `what the models see: one panel per framing (${framings.join(", ")}), at ${answer.input_size} px`;
  } else {
    glyph.src = answer.glyph;
    glyph.width = 128;
    document.getElementById("glyph-caption").textContent =
      `what the model sees: the 64 x 64 glyph after preprocessing (scored at ${answer.input_size} px)`;
  }
  document.getElementById("error").textContent = "";
  result.dataset.seq = String(seq);
  result.dataset.state = "shown";
}

function showError(message, seq) {
  document.getElementById("error").textContent = message;
  result.dataset.seq = String(seq);
  result.dataset.state = "error";
}

function showEmpty() {
  latest++; // an answer still on its way is for a drawing that is gone
  document.getElementById("character").textContent = "?";
  document.getElementById("value").textContent = "–";
  document.getElementById("confidence").textContent = "–";
  document.getElementById("timing").textContent = "";
  document.getElementById("top-k").replaceChildren();
  document.getElementById("glyph").removeAttribute("src");
  document.getElementById("error").textContent = "";
  result.dataset.state = "empty";
}

async function loadFacts() {
  const facts = await (await fetch("/api/model")).json();
  const accuracy = (p) => (p === null || p === undefined ? "n/a" : percent(p));
  document.getElementById("model-facts").textContent =
    `model ${facts.model ?? "n/a"} (${facts.format}, ${facts.file}), subset ${facts.size ?? "n/a"}, ` +
    `weights start ${facts.start ?? "n/a"}, test accuracy ${accuracy(facts.test_accuracy)}, ` +
    `validation accuracy ${accuracy(facts.val_accuracy)}`;
}

paper();
loadFacts().catch((error) => { document.getElementById("model-facts").textContent = `model facts: ${error}`; });
