"use strict";
// The upload page: posts the image to /api/similar and draws the JSON it gets back.
const form = document.getElementById("upload");
const input = document.getElementById("image");
const drop = document.getElementById("drop");
const statusLine = document.getElementById("status");

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function showStatus(message, isError = false) {
  statusLine.textContent = message;
  statusLine.className = isError ? "error" : "";
}

function drawAuthors(authors) {
  const box = document.getElementById("authors");
  box.replaceChildren();
  for (const author of authors) {
    const bar = element("div", { class: "bar" });
    bar.append(element("span", { class: "name", title: author.name }, author.name));
    const track = element("span", { class: "track" });
    track.append(element("span", { class: "fill", style: `width:${(100 * author.probability).toFixed(1)}%` }));
    track.append(element("span", { class: "prior", title: `prior ${author.prior.toFixed(3)}`,
                                   style: `left:${(100 * author.prior).toFixed(1)}%` }));
    bar.append(track, element("span", {}, author.probability.toFixed(3)));
    box.append(bar);
  }
}

function genreSpans(genres) {
  return (genres || []).map(g => element("span", {}, `${g.name} ${g.probability.toFixed(2)}`));
}

function drawSynopsis(synopsis) {
  document.getElementById("text-part").hidden = !synopsis;
  if (!synopsis) return;
  document.getElementById("text-genres").replaceChildren(...genreSpans(synopsis.text_genres));
  document.getElementById("fused-genres").replaceChildren(...genreSpans(synopsis.fused_genres));
  document.getElementById("fused-heading").hidden = !synopsis.fused_genres;
  document.getElementById("text-note").textContent = synopsis.note || "";
}

// The same colours as the overlay PNGs (inference/style_overlay.py).
const COLOURS = ["#e6194b", "#0082c8", "#3cb44b", "#f58230", "#911eb4", "#46f0f0"];
let lastFile = null;
let lastResult = null;

function drawStyleMap(result, picture) {
  const canvas = document.getElementById("overlay");
  const legend = document.getElementById("map-legend");
  const show = document.getElementById("explain").checked && result && result.style_map;
  canvas.hidden = legend.hidden = !show;
  document.getElementById("query").hidden = Boolean(show);
  if (!show) return;
  const map = result.style_map;
  const names = Object.keys(map.authors);
  const [rows, cols] = map.grid;
  const context = canvas.getContext("2d");
  const scale = Math.min(canvas.width / picture.naturalWidth, canvas.height / picture.naturalHeight);
  const width = picture.naturalWidth * scale, height = picture.naturalHeight * scale;
  const left = (canvas.width - width) / 2, top = (canvas.height - height) / 2;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.drawImage(picture, left, top, width, height);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let best = 0;
      names.forEach((name, i) => { if (map.authors[name][r][c] > map.authors[names[best]][r][c]) best = i; });
      context.globalAlpha = 0.6 * map.authors[names[best]][r][c];
      context.fillStyle = COLOURS[best % COLOURS.length];
      context.fillRect(left + c * width / cols, top + r * height / rows, width / cols, height / rows);
    }
  }
  context.globalAlpha = 1;
  legend.replaceChildren();
  names.forEach((name, i) => {
    legend.append(element("span", { class: "swatch", style: `background:${COLOURS[i % COLOURS.length]}` }));
    legend.append(document.createTextNode(name));
  });
  legend.append(element("div", {}, mixedSummary(result.mixed)));
}

function mixedSummary(mixed) {
  if (!mixed || mixed.length === 0) return "one style";
  return "mixed styles: " + mixed.map(m =>
    `${m.author} (${m.where ? m.where + " " : ""}${Math.round(100 * m.share)} %)`).join(", ");
}

function drawResult(result, file) {
  const picture = document.getElementById("query");
  picture.onload = () => drawStyleMap(result, picture);
  picture.src = URL.createObjectURL(file);
  lastFile = file;
  lastResult = result;
  drawAuthors(result.authors);
  document.getElementById("unknown").hidden = !result.unknown_author;
  const genres = document.getElementById("genres");
  genres.replaceChildren(...result.genres.map(g => element("span", {}, `${g.name} ${g.probability.toFixed(2)}`)));
  document.getElementById("genres-heading").hidden = result.genres.length === 0;
  drawSynopsis(result.synopsis);
  const list = document.getElementById("titles");
  list.replaceChildren();
  for (const title of result.titles) {
    const item = element("li", { class: "title" });
    if (title.thumbnail_url) item.append(element("img", { src: title.thumbnail_url, alt: title.title }));
    item.append(element("div", {}, `${title.rank}. ${title.title}`));
    item.append(element("div", {}, title.author || "?"));
    item.append(element("div", { class: "score" }, title.score.toFixed(3)));
    list.append(item);
  }
  document.getElementById("result").hidden = false;
}

async function submit(file) {
  const body = new FormData();
  body.append("image", file);
  body.append("k", document.getElementById("k").value);
  const synopsis = document.getElementById("synopsis").value.trim();
  if (synopsis && !document.getElementById("synopsis-box").hidden) body.append("synopsis", synopsis);
  if (document.getElementById("explain").checked) body.append("explain", "1");
  showStatus(`Looking at ${file.name}…`);
  try {
    const response = await fetch("/api/similar", { method: "POST", body });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    drawResult(answer.results[0], file);
    showStatus(`${file.name}: ${answer.results[0].titles.length} titles (${answer.backend})`);
  } catch (error) {
    showStatus(`${file.name}: ${error.message}`, true);
  }
}

// The toggle: shows or hides the map; a result asked without one is asked again, with it.
document.getElementById("explain").addEventListener("change", () => {
  if (!lastFile) return;
  if (document.getElementById("explain").checked && !(lastResult && lastResult.style_map)) submit(lastFile);
  else drawStyleMap(lastResult, document.getElementById("query"));
});
input.addEventListener("change", () => { if (input.files.length) submit(input.files[0]); });
form.addEventListener("submit", event => event.preventDefault());
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, event => { event.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, event => { event.preventDefault(); drop.classList.remove("over"); });
}
drop.addEventListener("drop", event => {
  if (event.dataTransfer.files.length) submit(event.dataTransfer.files[0]);
});

fetch("/healthz").then(r => r.json()).then(health => {
  document.getElementById("bundle").textContent =
    `Model ${health.bundle} (version ${health.version}), ${health.titles} titles.`;
  document.getElementById("synopsis-box").hidden = !health.synopsis;
}).catch(() => {});
