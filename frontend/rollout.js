// The rollout page's charts: traffic weight over time and, per metric, canary vs stable with the
// threshold line. Polls /rollouts/<pk>/data.json every 2 s while the rollout is active.
import {
  CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip,
} from "chart.js";

Chart.register(CategoryScale, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip);

const POLL_MS = 2000;
const charts = {};

function label(at) {
  return at ? at.slice(11, 19) : "";
}

function upsert(key, canvas, config) {
  if (charts[key]) {
    charts[key].data = config.data;
    charts[key].update("none");
  } else {
    charts[key] = new Chart(canvas, config);
  }
}

function weightChart(data) {
  const canvas = document.getElementById("mg-weight-chart");
  if (!canvas) return;
  upsert("weight", canvas, {
    type: "line",
    data: {
      labels: data.weights.map((p) => label(p.at)),
      datasets: [{ label: "canary weight (%)", data: data.weights.map((p) => p.weight), stepped: true, borderColor: "#d63384" }],
    },
    options: { animation: false, scales: { y: { min: 0, max: 100 } } },
  });
}

function metricCharts(data) {
  const box = document.getElementById("mg-metric-charts");
  if (!box) return;
  const names = [...new Set(data.analysis_runs.flatMap((run) => Object.keys(run.metrics)))];
  const empty = document.getElementById("mg-no-metrics");
  if (empty) empty.hidden = names.length > 0;
  const labels = data.analysis_runs.map((run) => label(run.at));
  for (const name of names) {
    const key = `metric:${name}`;
    let canvas = box.querySelector(`canvas[data-metric="${CSS.escape(name)}"]`);
    if (!canvas) {
      const title = document.createElement("h3");
      title.className = "h6 mt-2";
      title.textContent = name;
      canvas = document.createElement("canvas");
      canvas.dataset.metric = name;
      canvas.height = 120;
      box.append(title, canvas);
    }
    const value = (field) => data.analysis_runs.map((run) => (run.metrics[name] || {})[field] ?? null);
    const drawn = (values) => values.some((v) => v !== null);
    // One dashed line per bound: a minimum (success rate), a maximum (p99, gates) or both (a range).
    const bounds = [
      ["threshold (min)", value("threshold_min")],
      ["threshold (max)", value("threshold_max")],
    ].filter(([, values]) => drawn(values));
    if (!bounds.length && drawn(value("threshold"))) bounds.push(["threshold", value("threshold")]);
    upsert(key, canvas, {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "canary", data: value("canary"), borderColor: "#d63384" },
          { label: "stable", data: value("stable"), borderColor: "#0d6efd" },
          ...bounds.map(([text, values]) => (
            { label: text, data: values, borderColor: "#6c757d", borderDash: [6, 4], pointRadius: 1 }
          )),
        ],
      },
      options: { animation: false, spanGaps: true },
    });
  }
}

async function refresh(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) return false;
  const data = await response.json();
  weightChart(data);
  metricCharts(data);
  return data.active;
}

function start() {
  const holder = document.getElementById("mg-rollout-data");
  if (!holder) return;
  const url = holder.dataset.url;
  const tick = async () => {
    let active = false;
    try {
      active = await refresh(url);
    } catch (error) {
      active = true; // a network hiccup: try again
    }
    if (active) setTimeout(tick, POLL_MS);
  };
  tick();
}

document.addEventListener("DOMContentLoaded", start);
