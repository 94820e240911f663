// A small time-series line chart on a canvas (no library, no build step).
// drawChart(canvas, points, series): points are [time_s, v1, v2, ...] rows; each series is
// {index, color, axis: "left"|"right", dash: bool}; values may be null (a gap).
"use strict";

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function drawChart(canvas, points, series, labels) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  if (canvas.width !== width * ratio) {
    canvas.width = width * ratio;
    canvas.height = height * ratio;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 44, right: 44, top: 8, bottom: 18 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const now = points.length ? points[points.length - 1][0] : 0;
  const span = 120;
  const x = (t) => pad.left + plotW * (1 - (now - t) / span);
  const max = { left: 0, right: 0 };
  for (const s of series) {
    for (const p of points) {
      const v = p[s.index];
      if (v !== null && v > max[s.axis]) max[s.axis] = v;
    }
  }
  max.left = niceMax(max.left);
  max.right = niceMax(max.right);
  ctx.strokeStyle = "#dde1e7";
  ctx.fillStyle = "#6b7280";
  ctx.font = "10px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + plotH * (i / 4);
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(pad.left + plotW, y);
    ctx.stroke();
    const fraction = 1 - i / 4;
    ctx.textAlign = "right";
    ctx.fillText(formatNumber(max.left * fraction), pad.left - 4, y + 3);
    ctx.textAlign = "left";
    ctx.fillText(formatNumber(max.right * fraction), pad.left + plotW + 4, y + 3);
  }
  ctx.textAlign = "left";
  ctx.fillText(labels.left, 2, height - 4);
  ctx.textAlign = "right";
  ctx.fillText(labels.right, width - 2, height - 4);
  ctx.textAlign = "center";
  ctx.fillText("last 2 min", pad.left + plotW / 2, height - 4);
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.6;
    ctx.setLineDash(s.dash ? [4, 3] : []);
    ctx.beginPath();
    let drawing = false;
    for (const p of points) {
      const v = p[s.index];
      if (v === null || now - p[0] > span) {
        drawing = false;
        continue;
      }
      const y = pad.top + plotH * (1 - v / max[s.axis]);
      if (drawing) ctx.lineTo(x(p[0]), y);
      else ctx.moveTo(x(p[0]), y);
      drawing = true;
    }
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

function formatNumber(value) {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}
