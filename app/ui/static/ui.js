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

// The model page's "try a prediction": send the form, show the answer (or the refusal)
// without leaving the page.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("try");
  const out = document.getElementById("try-answer");
  if (!form || !out) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    out.textContent = "…";
    try {
      const answer = await fetch(form.action, {
        method: "POST", body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin" });
      const text = await answer.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (error) { /* as sent */ }
      out.textContent = `${answer.status}\n${shown}`;
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
