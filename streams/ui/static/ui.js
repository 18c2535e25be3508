// The UI's own script (loaded from /static; the CSP allows no inline script):
//  - the cluster selector submits itself on change;
//  - live parts (htmx polling) report their state in the header;
//  - the Analytics page draws each chart spec (JSON in the canvas's data-chart) with Chart.js.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function setStatus(text, bad) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("bad", !!bad);
  }

  function clock() {
    return new Date().toISOString().substring(11, 19) + " UTC";
  }

  ready(function () {
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    if (document.querySelector("[hx-trigger^='every']")) setStatus("live");
    document.body.addEventListener("htmx:afterSwap", function () {
      if (document.querySelector("[hx-trigger^='every']")) setStatus("live · updated " + clock());
      drawCharts();
    });
    // A control request's refusal (400/403/503) is its answer: shown in place, not as a failed poll.
    document.body.addEventListener("htmx:beforeSwap", function (evt) {
      if (evt.detail.xhr && evt.detail.xhr.status >= 400 && evt.detail.target && evt.detail.target.closest("[data-control]")) {
        evt.detail.shouldSwap = true;
        evt.detail.isError = false;
      }
    });
    document.body.addEventListener("htmx:responseError", function (evt) {
      var xhr = evt.detail.xhr;
      var text = (xhr && xhr.responseText) ? xhr.responseText.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim() : "";
      setStatus("not updated since " + clock() + ": " + (text || ("HTTP " + (xhr ? xhr.status : "?"))), true);
    });
    document.body.addEventListener("htmx:sendError", function () {
      setStatus("UI server unreachable since " + clock(), true);
    });
    drawCharts();
  });

  function drawCharts() {
    if (typeof Chart === "undefined") return;
    document.querySelectorAll("canvas[data-chart]:not([data-drawn])").forEach(function (canvas) {
      var spec = JSON.parse(canvas.getAttribute("data-chart"));
      var horizontal = !!spec.horizontal;
      var valueAxis = {
        beginAtZero: true,
        stacked: !!spec.stacked,
        type: spec.log ? "logarithmic" : "linear",
        title: { display: !!spec.y, text: spec.y || "" },
      };
      if (spec.percent) {
        valueAxis.max = 1;
        valueAxis.ticks = { callback: function (v) { return Math.round(v * 100) + " %"; } };
      }
      var labelAxis = { stacked: !!spec.stacked, ticks: { autoSkip: !horizontal, maxRotation: 60 } };
      if (horizontal) {  // one row per label, every label shown
        canvas.parentNode.style.height = Math.max(200, 26 * spec.labels.length * Math.max(1, spec.datasets.length * 0.7) + 80) + "px";
      }
      var scales = horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis };
      new Chart(canvas, {
        type: spec.kind,
        data: {
          labels: spec.labels,
          datasets: spec.datasets.map(function (d) {
            return {
              label: d.label, data: d.data, backgroundColor: d.color, borderColor: d.color,
              borderWidth: spec.kind === "line" ? 2 : 0, pointRadius: spec.kind === "line" ? 2 : 0,
            };
          }),
        },
        options: {
          indexAxis: horizontal ? "y" : "x",
          animation: false,
          maintainAspectRatio: false,
          scales: scales,
          plugins: { legend: { display: spec.datasets.length > 1, position: "bottom" } },
        },
      });
      canvas.setAttribute("data-drawn", "1");
    });
  }
})();
