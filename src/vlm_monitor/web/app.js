// Dashboard: stream list with live view (MJPEG, or one socket for many streams), live status and analyzers, add/remove.
"use strict";

const cards = new Map();
const $ = (sel, root = document) => root.querySelector(sel);
// Each MJPEG view holds one of the six connections a browser opens to this server: past
// MJPEG_CARDS streams every card's picture comes over one socket instead (pictures.js).
const MJPEG_CARDS = 4;
const cardPictures = new PictureSocket(5, (id) => {
  const card = cards.get(id);
  return card && card.dataset.view !== "webrtc" ? $(".view", card) : null;
});

function placeViews() {
  const shared = cards.size > MJPEG_CARDS;
  for (const [id, card] of cards) {
    const img = $(".view", card);
    const source = shared ? "socket" : "mjpeg";
    if (img.dataset.source === source) continue;
    img.dataset.source = source;
    if (shared) img.removeAttribute("src");
    else img.src = withToken(`/api/streams/${encodeURIComponent(id)}/mjpeg`);
  }
  if (shared && !cardPictures.ws) cardPictures.connect(640);
  if (!shared && cardPictures.ws) cardPictures.close();
  cardPictures.want(shared ? [...cards.keys()] : []);
}

function render(status) {
  let card = cards.get(status.id);
  if (!card) {
    card = $("#card").content.firstElementChild.cloneNode(true);
    card.dataset.stream = status.id;
    $(".sid", card).textContent = status.id;
    $(".remove", card).addEventListener("click", () => removeStream(status.id));
    $(".rtc-toggle", card).addEventListener("click", () => toggleWebRtc(card, status.id));
    $(".report-toggle", card).addEventListener("click", () => toggleReport(card));
    $("#streams").append(card);
    cards.set(status.id, card);
    placeViews();
    showUnacked(card);
    syncStreamOptions();
    loadResults(status.id);
  }
  const state = $(".state", card);
  state.textContent = status.state;
  state.className = `badge state ${status.state}`;
  card.dataset.state = status.state;
  $(".fps", card).textContent = (status.fps_in ?? 0).toFixed(1);
  $(".frames", card).textContent = status.frames_in;
  $(".size", card).textContent = status.width ? `${status.width}×${status.height}` : "–";
  $(".reconnects", card).textContent = status.reconnects;
  $(".errors", card).textContent = status.decode_errors;
  $(".subs", card).textContent = status.subscribers;
  $(".age", card).textContent = status.last_frame_age_s == null ? "–" : `${status.last_frame_age_s.toFixed(1)} s`;
  $(".url", card).textContent = status.url;
  $(".error", card).textContent = status.state === "live" ? "" : (status.last_error || "");
  if (status.analyzers) showAnalyzerStatus(card, status);
  if ("degraded" in status) showDegraded(card, status);
  if (status.clips) {
    const c = status.clips;
    $(".results", card).hidden = false;
    $(".clipstats", card).textContent =
      `${c.videos_created} clips · ${c.inferences_completed} results · lag ${c.lag_s.toFixed(1)} s` +
      (c.clips_dropped_stale ? ` · ${c.clips_dropped_stale} stale` : "") +
      (c.paused_reason ? ` · paused: ${c.paused_reason}` : "");
  }
}

const MAX_RESULTS = 8;

function addResult(result, atTop = true) {
  const card = cards.get(result.stream);
  if (!card) return;
  const list = $(".result-list", card);
  if (list.querySelector(`[data-id="${result.id}"]`)) return;
  const li = document.createElement("li");
  li.dataset.id = result.id;
  const when = new Date(result.inference_end_time * 1000).toLocaleTimeString();
  const head = document.createElement("span");
  head.className = "meta";
  head.textContent = `${when} · ${result.provider || "–"} · ${result.inference_duration.toFixed(2)} s`;
  const body = document.createElement("span");
  body.className = result.error ? "text failed" : "text";
  body.textContent = result.error ? `error: ${result.error}` : result.result;
  li.append(head, body);
  if (result.id != null) {
    const clip = document.createElement("a");
    clip.href = `/api/results/${result.id}/clip`;
    clip.textContent = "clip";
    li.append(clip);
  }
  $(".results", card).hidden = false;
  if (atTop) list.prepend(li); else list.append(li);
  while (list.children.length > MAX_RESULTS) list.lastElementChild.remove();
}

async function loadResults(id) {
  const resp = await fetch(`/api/results?stream=${encodeURIComponent(id)}&limit=${MAX_RESULTS}`);
  if (resp.ok) (await resp.json()).forEach((r) => addResult(r, false));
}

// WebRTC view (WHEP) with MJPEG as the fallback; the latency shown is glass to glass, read
// from the test camera's timestamp strip in the shown picture.
async function toggleWebRtc(card, id) {
  if (card.rtc) return stopWebRtc(card, "MJPEG");
  const pc = new RTCPeerConnection();
  card.rtc = { pc, location: null };
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (ev) => { $(".rtc-view", card).srcObject = ev.streams[0] || new MediaStream([ev.track]); };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") stopWebRtc(card, "MJPEG (WebRTC failed)");
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
      setTimeout(resolve, 2000);
    });
    const resp = await fetch(`/whep/${encodeURIComponent(id)}`, {
      method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) throw new Error(`HTTP ${resp.status}`);
    card.rtc.location = resp.headers.get("Location");
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  } catch (err) { return stopWebRtc(card, `MJPEG (WebRTC failed: ${err.message})`); }
  $(".view", card).hidden = true;
  $(".rtc-view", card).hidden = false;
  $(".view-kind", card).textContent = "WebRTC";
  card.dataset.view = "webrtc";
  $(".rtc-toggle", card).textContent = "MJPEG";
}

function stopWebRtc(card, label) {
  if (card.rtc) {
    if (card.rtc.location) fetch(card.rtc.location, { method: "DELETE" }).catch(() => {});
    card.rtc.pc.close();
    card.rtc = null;
  }
  $(".rtc-view", card).hidden = true;
  $(".view", card).hidden = false;
  $(".view-kind", card).textContent = label;
  card.dataset.view = "mjpeg";
  $(".rtc-toggle", card).textContent = "WebRTC";
}

function measureLatency() {
  for (const card of cards.values()) {
    const el = card.dataset.view === "webrtc" ? $(".rtc-view", card) : $(".view", card);
    const strip = readStrip(el);
    const out = $(".view-latency", card);
    if (strip) { const ms = Date.now() - strip.ts; out.textContent = `${ms} ms`; out.dataset.ms = ms; }
  }
}

function drop(id) {
  const card = cards.get(id);
  if (card && card.rtc) stopWebRtc(card, "MJPEG");
  if (card) { card.remove(); cards.delete(id); placeViews(); }
  $("#empty").hidden = cards.size > 0;
}

async function refresh() {
  try {
    const resp = await fetch("/api/streams");
    if (!resp.ok) return;
    const list = await resp.json();
    const seen = new Set(list.map((s) => s.id));
    for (const id of [...cards.keys()]) if (!seen.has(id)) drop(id);
    list.forEach(render);
    $("#empty").hidden = list.length > 0;
  } catch (err) { /* server restarting: the next poll retries */ }
}

async function removeStream(id) {
  const resp = await fetch(`/api/streams/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (resp.ok || resp.status === 404) drop(id);
}

$("#add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const body = Object.fromEntries(new FormData(form));
  const resp = await fetch("/api/streams", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) { $("#form-error").textContent = data.error || `error ${resp.status}`; return; }
  $("#form-error").textContent = "";
  form.reset();
  render(data);
});

let lastSeq = null;

function connectEvents(delay = 500) {
  const since = lastSeq == null ? "" : `?since_seq=${lastSeq}`;
  const ws = new WebSocket(withToken(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/events${since}`));
  const conn = $("#conn");
  ws.onopen = () => { conn.textContent = "live"; conn.className = "badge open"; delay = 500; };
  ws.onmessage = (msg) => {
    const ev = JSON.parse(msg.data);
    if (ev.type === "hello") { if (lastSeq == null) lastSeq = ev.seq; ev.streams.forEach(render); return; }
    if (ev.seq != null) lastSeq = ev.seq;
    if (ev.type === "stream.state" && cards.has(ev.stream)) render(ev);
    else if (ev.type === "result") addResult(ev);
    else if (ev.type === "analysis" && cards.has(ev.stream)) showAnalysis(cards.get(ev.stream), ev);
    else if (ev.type.startsWith("flow.")) onFlowEvent(ev);
    else if (ev.type === "event") onIncident(ev.event);
  };
  ws.onclose = () => {
    conn.textContent = "disconnected"; conn.className = "badge closed";
    setTimeout(() => connectEvents(Math.min(delay * 2, 10000)), delay);
  };
}

refresh();
setInterval(refresh, 1000);
setInterval(measureLatency, 500);
connectEvents();

// A browser gives one server six HTTP/1.1 connections; six live views hold them all, so the
// next page could not even load. Leaving ends the views first.
window.addEventListener("beforeunload", () => {
  for (const card of cards.values()) $(".view", card).removeAttribute("src");
  cardPictures.close();
});
