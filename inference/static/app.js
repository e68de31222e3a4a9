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

function drawResult(result, file) {
  document.getElementById("query").src = URL.createObjectURL(file);
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
