// ModelKiln dashboard: draws the server's Plotly figures, and keeps "live" pages current
// by fetching the page's main part again every two seconds until nothing changes there.
"use strict";

// A page's figures: its #figures, and those of each part that brings its own (.figures).
function pageFigures(root) {
  const figures = {};
  root.querySelectorAll("script#figures, script.figures").forEach((source) => {
    Object.assign(figures, JSON.parse(source.textContent));
  });
  return figures;
}

function drawCharts(root) {
  if (typeof Plotly === "undefined") return;
  const figures = pageFigures(root);
  root.querySelectorAll(".chart[data-figure]").forEach((element) => {
    const figure = figures[element.dataset.figure];
    if (!figure) return;
    Plotly.react(element, figure.data, figure.layout, { responsive: true, displaylogo: false });
  });
}

async function refresh(main) {
  try {
    const answer = await fetch(window.location.href, {
      headers: { "X-Kiln-Fragment": "1" }, credentials: "same-origin", cache: "no-store" });
    if (answer.redirected || !answer.ok) return false;  // signed out, or gone: stop
    const html = await answer.text();
    const incoming = document.createElement("div");
    incoming.innerHTML = html;
    // Keep the drawn charts' elements: their figures are updated in place.
    const charts = new Map();
    main.querySelectorAll(".chart[data-figure]").forEach((el) => charts.set(el.id, el));
    incoming.querySelectorAll(".chart[data-figure]").forEach((el) => {
      const drawn = charts.get(el.id);
      if (drawn) { drawn.dataset.points = el.dataset.points; el.replaceWith(drawn); }
    });
    main.replaceChildren(...incoming.childNodes);
    drawCharts(main);
    return main.querySelector('[data-live-end="1"]') === null;
  } catch (error) {
    return true;  // a blip: try again at the next tick
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("live");
  if (!main) return;
  drawCharts(main);
  if (main.dataset.live !== "1") return;
  let pending = false;
  const timer = window.setInterval(async () => {
    if (pending || document.hidden) return;
    pending = true;
    const again = await refresh(main);
    pending = false;
    if (!again) window.clearInterval(timer);
  }, 2000);
});

// The model page's "try a prediction": send the form to the pressed button's route
// (Predict, or Explain: its formaction), show the answer (or the refusal) without leaving
// the page; an explanation's first row is also drawn as bars.
const POSITIVE = "#c2410c";  // an attribution that raises the output (ui.css --accent)
const NEGATIVE = "#1d4ed8";  // one that lowers it

function hideExplanation() {
  const figure = document.getElementById("explain-figure");
  const chart = document.getElementById("chart-explain");
  if (!figure || !chart) return;
  figure.hidden = true;
  delete chart.dataset.bars;
  if (typeof Plotly !== "undefined") Plotly.purge(chart);
}

// One output (a class of a classifier) of the row: its attributions, the largest |value|
// at the top, above zero in one colour and below in the other.
function drawExplainedOutput(body, row, index) {
  const chart = document.getElementById("chart-explain");
  const caption = document.getElementById("explain-caption");
  const output = row.outputs[index];
  const ranked = Object.entries(output.attributions)
    .sort((a, b) => Math.abs(a[1]) - Math.abs(b[1]));  // Plotly stacks bars from the bottom
  const longest = Math.max(10, ...ranked.map(([name]) => Math.min(name.length, 40)));
  const number = (value) => Number(value).toPrecision(4);
  const which = output.class === null || output.class === undefined ? "" : ` of class ${output.class}`;
  const rows = body.explanations.length > 1 ? ` (the first of ${body.explanations.length} rows)` : "";
  caption.textContent = `base value ${number(output.base_value)} + attributions = output ` +
    `${number(output.value)}, the ${body.output}${which}; predicted ` +
    `${JSON.stringify(row.prediction)}${rows}; ${body.method}` +
    (body.samples ? `, ${body.samples} permutations` : "");
  const trace = {
    type: "bar", orientation: "h",
    x: ranked.map(([, value]) => value), y: ranked.map(([name]) => name),
    marker: { color: ranked.map(([, value]) => (value >= 0 ? POSITIVE : NEGATIVE)) },
    hovertemplate: "%{y}: %{x:.4g}<extra></extra>",
  };
  const layout = {
    height: Math.max(200, 28 * ranked.length + 80),
    margin: { l: 20 + 7 * longest, r: 20, t: 10, b: 50 },
    xaxis: { title: { text: `attribution (${body.output})` }, zeroline: true },
    yaxis: { type: "category", automargin: true }, showlegend: false,  // "0", "1": not numbers
  };
  Plotly.react(chart, [trace], layout, { responsive: true, displaylogo: false });
  chart.dataset.bars = String(ranked.length);
  chart.dataset.output = String(index);
}

// An explain answer's first row: the output of the class it predicts (a select switches
// class), or a regression's one output.
function drawExplanation(body) {
  const figure = document.getElementById("explain-figure");
  const select = document.getElementById("explain-class");
  const label = document.getElementById("explain-class-label");
  const row = body && body.explanations && body.explanations[0];
  if (!figure || !select || !row || !row.outputs.length || typeof Plotly === "undefined") return;
  let index = row.outputs.findIndex(
    (output) => output.class !== null && String(output.class) === String(row.prediction));
  if (index < 0) index = 0;
  select.replaceChildren(...row.outputs.map(
    (output, i) => new Option(String(output.class), String(i), i === index, i === index)));
  label.hidden = row.outputs.length < 2;
  select.onchange = () => drawExplainedOutput(body, row, Number(select.value));
  figure.hidden = false;  // drawn once shown: a hidden chart has no width
  drawExplainedOutput(body, row, index);
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("try");
  const out = document.getElementById("try-answer");
  if (!form || !out) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.submitter;
    const explaining = Boolean(button && button.id === "explain-button");
    const action = (button && button.getAttribute("formaction")) || form.action;
    hideExplanation();
    out.textContent = "…";
    delete out.dataset.status;
    try {
      const answer = await fetch(action, {
        method: "POST", body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin" });
      const text = await answer.text();
      let shown = text;
      let parsed = null;
      try { parsed = JSON.parse(text); shown = JSON.stringify(parsed, null, 2); } catch (error) { /* as sent */ }
      out.textContent = `${answer.status}\n${shown}`;
      if (explaining && answer.ok) drawExplanation(parsed);
      out.dataset.status = String(answer.status);
    } catch (error) {
      out.textContent = `the gateway did not answer: ${error}`;
    }
  });
});

// The model page's drift panel: a click on a column's row, or on its line in the PSI
// chart, draws that column's training and live distributions.
function showDriftColumn(column) {
  const chart = document.getElementById("chart-drift-column");
  if (!chart || typeof Plotly === "undefined") return;
  const name = document.getElementById("drift-column-name");
  const figure = pageFigures(document)[`drift-column:${column}`];
  document.querySelectorAll("#drift-columns tr[data-column]").forEach((row) => {
    row.classList.toggle("selected", row.dataset.column === column);
  });
  if (!figure) {
    name.textContent = `${column} (no training distribution to compare with)`;
    Plotly.purge(chart);
    return;
  }
  name.textContent = column;
  chart.dataset.figure = `drift-column:${column}`;
  Plotly.react(chart, figure.data, figure.layout, { responsive: true, displaylogo: false });
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("drift-columns");
  if (table) {
    table.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-column]");
      if (row) showDriftColumn(row.dataset.column);
    });
  }
  const psi = document.getElementById("chart-drift-psi");
  if (psi && typeof psi.on === "function") {
    psi.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point && point.data.meta) showDriftColumn(point.data.meta);
    });
  }
});
