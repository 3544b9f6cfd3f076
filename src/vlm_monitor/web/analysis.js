// Per-stream analyzer panel: emotion bars + timeline, heart-rate plot, motion, OCR, toggles.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const EMOTION_COLORS = {
  angry: "#d03b2f", disgust: "#6b8e23", fear: "#7b4fb0", happy: "#e6a700",
  sad: "#3a6fd0", surprise: "#e0629a", neutral: "#8a94a6",
};
const ANALYZERS = ["motion", "emotion", "heart_rate", "attention", "ocr"];
const HISTORY_S = 60;
const panels = new WeakMap();
// The panel's markup, one copy for the dashboard's cards and the wall's student card: each
// holds an empty <section class="analysis"> that the first result fills.
const ANALYSIS_PANEL = `
  <div class="emotion" hidden>
    <h3>Emotion <span class="dominant"></span></h3>
    <div class="emotion-bars"></div>
    <canvas class="emotion-timeline" width="400" height="18" title="dominant emotion, last 60 s"></canvas>
  </div>
  <div class="heart" hidden>
    <h3>Heart rate <span class="bpm"></span> <small>bpm</small> <span class="hr-note"></span></h3>
    <canvas class="heart-plot" width="400" height="90" title="bpm, last 60 s"></canvas>
  </div>
  <div class="attention" hidden>
    <h3>Attention <span class="badge attention-state"></span> <span class="incidents"></span></h3>
    <p class="attention-note"></p>
  </div>
  <p class="motion" hidden>Motion: <span class="motion-level"></span></p>
  <p class="ocr" hidden>Text: <span class="ocr-text"></span></p>
`;

function panelOf(card) {
  let p = panels.get(card);
  if (p) return p;
  const root = card.querySelector(".analysis");
  if (!root.firstElementChild) root.innerHTML = ANALYSIS_PANEL;
  const bars = root.querySelector(".emotion-bars");
  for (const e of EMOTIONS) {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.dataset.emotion = e;
    row.innerHTML = `<span class="label">${e}</span><span class="bar"><i style="background:${EMOTION_COLORS[e]}"></i></span><span class="pct">–</span>`;
    bars.append(row);
  }
  p = { root, emotions: [], heart: [] };
  panels.set(card, p);
  return p;
}

function trim(series, now) {
  while (series.length && now - series[0].t > HISTORY_S) series.shift();
}

function drawTimeline(canvas, series, now) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  for (const s of series) {
    const x = w - ((now - s.t) / HISTORY_S) * w;
    ctx.fillStyle = s.face ? EMOTION_COLORS[s.dominant] || "#ccc" : "#e3e6ea";
    ctx.fillRect(x, 0, Math.max(2, w / (HISTORY_S * 5)), h);
  }
}

function drawHeart(canvas, series, now) {
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const lo = 40, hi = 160;
  ctx.strokeStyle = "#e3e6ea";
  ctx.fillStyle = "#889";
  ctx.font = "10px system-ui";
  for (const v of [60, 90, 120, 150]) {
    const y = h - ((v - lo) / (hi - lo)) * h;
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(String(v), 2, y - 2);
  }
  ctx.strokeStyle = "#c62828";
  ctx.lineWidth = 2;
  ctx.beginPath();
  let pen = false;
  for (const s of series) {
    if (s.bpm == null) { pen = false; continue; }
    const x = (w - 4) - ((now - s.t) / HISTORY_S) * (w - 4);
    const y = h - ((Math.min(hi, Math.max(lo, s.bpm)) - lo) / (hi - lo)) * h;
    if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    pen = true;
  }
  ctx.stroke();
  ctx.fillStyle = "#c62828";
  for (const s of series) {
    if (s.bpm == null) continue;
    const x = (w - 4) - ((now - s.t) / HISTORY_S) * (w - 4);
    const y = h - ((Math.min(hi, Math.max(lo, s.bpm)) - lo) / (hi - lo)) * h;
    ctx.fillRect(x - 2, y - 2, 4, 4);
  }
}

function showAnalysis(card, ev) {
  const p = panelOf(card);
  p.root.hidden = false;
  const r = ev.result;
  const now = ev.video_timestamp;
  if (ev.analyzer === "emotion") {
    p.root.querySelector(".emotion").hidden = false;
    const dominant = r.face_detected ? `${r.dominant_emotion} ${(r.confidence * 100).toFixed(0)}%` : "no face";
    p.root.querySelector(".dominant").textContent = dominant;
    for (const row of p.root.querySelectorAll(".bar-row")) {
      const v = r.emotions[row.dataset.emotion] ?? 0;
      row.querySelector("i").style.width = `${(v * 100).toFixed(1)}%`;
      row.querySelector(".pct").textContent = `${(v * 100).toFixed(0)}%`;
    }
    p.emotions.push({ t: now, dominant: r.dominant_emotion, face: r.face_detected });
    trim(p.emotions, now);
    drawTimeline(p.root.querySelector(".emotion-timeline"), p.emotions, now);
  } else if (ev.analyzer === "heart_rate") {
    p.root.querySelector(".heart").hidden = false;
    const bpm = p.root.querySelector(".bpm");
    bpm.textContent = r.bpm == null ? "–" : r.bpm.toFixed(0);
    bpm.dataset.bpm = r.bpm ?? "";
    p.root.querySelector(".hr-note").textContent =
      r.bpm == null ? r.reason : `SNR ${r.snr_db.toFixed(1)} dB · ${r.window_s.toFixed(0)} s window · ${r.method}`;
    p.heart.push({ t: now, bpm: r.bpm });
    trim(p.heart, now);
    drawHeart(p.root.querySelector(".heart-plot"), p.heart, now);
  } else if (ev.analyzer === "attention") {
    showAttention(card, r, now);
  } else if (ev.analyzer === "motion") {
    p.root.querySelector(".motion").hidden = false;
    p.root.querySelector(".motion-level").textContent =
      r.moving ? `moving · ${(r.level * 100).toFixed(1)}% of the picture · ${r.boxes.length} region(s)` : "still";
  } else if (ev.analyzer === "ocr") {
    p.root.querySelector(".ocr").hidden = false;
    p.root.querySelector(".ocr-text").textContent = r.text || "(no text)";
  }
}

function showAnalyzerStatus(card, status) {
  const running = status.analyzers || {};
  const box = card.querySelector(".analyzer-toggles");
  if (!box.querySelector("input")) {
    for (const name of ANALYZERS) {
      const label = document.createElement("label");
      label.innerHTML = `<input type="checkbox" value="${name}"> ${name.replace("_", " ")}`;
      label.querySelector("input").addEventListener("change", () => setAnalyzers(card, status.id));
      box.append(label);
    }
  }
  for (const input of box.querySelectorAll("input")) {
    if (document.activeElement !== input && !input.dataset.pending) input.checked = input.value in running;
  }
  const parts = Object.entries(running).map(
    ([name, s]) => `${name} ${s.fps.toFixed(1)}/s p99 ${s.latency_p99_s == null ? "–" : (s.latency_p99_s * 1000).toFixed(0) + " ms"}` +
      (s.errors ? ` · ${s.errors} errors` : ""));
  card.querySelector(".analyzer-stats").textContent = parts.join(" · ");
  const session = status.session;
  card.querySelector(".session").textContent = session ? `session ${session.session_id} (${session.source})` : "";
}

async function setAnalyzers(card, id) {
  const inputs = [...card.querySelectorAll(".analyzer-toggles input")];
  inputs.forEach((i) => { i.dataset.pending = "1"; });
  const wanted = inputs.filter((i) => i.checked).map((i) => i.value);
  const resp = await fetch(`/api/streams/${encodeURIComponent(id)}/analyzers`, {
    method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ analyzers: wanted }),
  });
  const data = await resp.json().catch(() => ({}));
  card.querySelector(".error").textContent = resp.ok ? "" : (data.error || `error ${resp.status}`);
  inputs.forEach((i) => { delete i.dataset.pending; });
}
