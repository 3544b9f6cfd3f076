// Realtime video chat over /ws/video: camera frames at the server's rate, 16 kHz PCM from the
// microphone, the model's text and audio streamed back. No build step, no CDN. With a camera
// of the server picked as the source (?source=<stream>), the server sends that camera's
// frames itself and the browser sends only the microphone.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { ws: null, stream: null, audioCtx: null, processor: null, frameTimer: null,
  videoFps: 2, retry: 500, wanted: false, playCtx: null, playAt: 0, responseText: "" };

function setConn(text, cls) { $("conn").textContent = text; $("conn").className = `badge ${cls || ""}`; }

function send(doc) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(doc));
}

function b64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function connect() {
  state.wanted = true;
  const source = $("source").value;
  const query = source ? `?source=${encodeURIComponent(source)}` : "";
  const ws = new WebSocket(withToken(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/video${query}`));
  $("source").disabled = true;
  state.ws = ws;
  setConn("connecting…");
  ws.onopen = () => { setConn("connected", "open"); state.retry = 500; $("start").disabled = false; };
  ws.onmessage = (msg) => onEvent(JSON.parse(msg.data));
  ws.onclose = () => {
    setConn("disconnected", "closed");
    $("start").disabled = true;
    if (state.wanted) { // come back by itself, backing off so a down server is not hammered
      setTimeout(connect, state.retry);
      state.retry = Math.min(state.retry * 2, 10000);
    }
  };
  $("connect").textContent = "Disconnect";
}

function disconnect() {
  state.wanted = false;
  stopStreaming();
  if (state.ws) { send({ type: "close" }); state.ws.close(); state.ws = null; }
  $("connect").textContent = "Connect";
  $("source").disabled = false;
}

function onEvent(ev) {
  switch (ev.type) {
    case "ready":
      $("session").textContent = `session ${ev.session_id} · provider ${ev.provider || "none"}`;
      $("session").dataset.sessionId = ev.session_id;
      state.videoFps = ev.video_fps || 2;
      break;
    case "speech.started":
      $("vad").textContent = "speaking"; $("vad").className = "badge speaking"; break;
    case "speech.stopped":
      $("vad").textContent = "silent"; $("vad").className = "badge"; break;
    case "transcript": {
      const li = document.createElement("li"); li.textContent = ev.text; $("transcript").append(li); break;
    }
    case "text.delta":
      if (!state.responseText) $("response").textContent = "";
      state.responseText += ev.text;
      $("response").textContent = state.responseText;
      $("response-state").textContent = "answering…";
      break;
    case "audio.delta": play(ev.audio, ev.sample_rate || 24000); break;
    case "response.done":
      $("response-state").textContent = ev.status === "completed" ? "" : `(${ev.status})`;
      $("response").dataset.done = ev.status;
      state.responseText = "";
      break;
    case "error": {
      const li = document.createElement("li"); li.textContent = `${ev.code}: ${ev.message}`;
      li.dataset.code = ev.code; $("errors").prepend(li);
      if (ev.code === "bad_source") state.wanted = false; // reconnecting would be refused again
      while ($("errors").children.length > 20) $("errors").lastElementChild.remove();
      break;
    }
  }
}

function play(data, rate) {
  if (!state.playCtx) state.playCtx = new AudioContext();
  const raw = atob(data);
  const pcm = new Int16Array(raw.length / 2);
  for (let i = 0; i < pcm.length; i++) pcm[i] = (raw.charCodeAt(2 * i + 1) << 8) | raw.charCodeAt(2 * i);
  const buf = state.playCtx.createBuffer(1, pcm.length, rate);
  const ch = buf.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
  const src = state.playCtx.createBufferSource();
  src.buffer = buf; src.connect(state.playCtx.destination);
  state.playAt = Math.max(state.playAt, state.playCtx.currentTime);
  src.start(state.playAt);
  state.playAt += buf.duration;
}

async function startStreaming() {
  const camera = !$("source").value; // else the server sends the chosen camera's frames
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: camera && { width: 640, height: 480 }, audio: true });
  } catch (err) { $("status").textContent = `${camera ? "camera/" : ""}microphone: ${err.message}`; return; }
  if (camera) $("preview").srcObject = state.stream;
  const canvas = document.createElement("canvas");
  if (camera) state.frameTimer = setInterval(() => {
    const v = $("preview");
    if (!v.videoWidth) return;
    canvas.width = v.videoWidth; canvas.height = v.videoHeight;
    canvas.getContext("2d").drawImage(v, 0, 0);
    const url = canvas.toDataURL("image/jpeg", 0.7);
    send({ type: "video", data: url.slice(url.indexOf(",") + 1) });
  }, 1000 / state.videoFps);
  state.audioCtx = new AudioContext({ sampleRate: 16000 });
  const source = state.audioCtx.createMediaStreamSource(state.stream);
  state.processor = state.audioCtx.createScriptProcessor(4096, 1, 1);
  state.processor.onaudioprocess = (e) => {
    const f = e.inputBuffer.getChannelData(0);
    const pcm = new Int16Array(f.length);
    for (let i = 0; i < f.length; i++) pcm[i] = Math.max(-1, Math.min(1, f[i])) * 0x7fff;
    send({ type: "audio", data: b64(new Uint8Array(pcm.buffer)) });
  };
  source.connect(state.processor);
  state.processor.connect(state.audioCtx.destination);
  $("start").disabled = true; $("stop").disabled = false;
  $("status").textContent = camera
    ? `streaming: video ${state.videoFps} fps, audio 16 kHz`
    : `streaming: audio 16 kHz; the model sees ${$("source").value} at ${state.videoFps} fps`;
}

function stopStreaming() {
  clearInterval(state.frameTimer); state.frameTimer = null;
  if (state.processor) { state.processor.disconnect(); state.processor = null; }
  if (state.audioCtx) { state.audioCtx.close(); state.audioCtx = null; }
  if (state.stream) { state.stream.getTracks().forEach((t) => t.stop()); state.stream = null; }
  $("start").disabled = !state.ws; $("stop").disabled = true;
  $("status").textContent = "stopped";
}

// The server's streams, any of which can be what the model sees.
async function loadSources() {
  const resp = await fetch("/api/streams").catch(() => null);
  if (!resp || !resp.ok) return;
  const select = $("source");
  for (const stream of await resp.json()) {
    const option = document.createElement("option");
    option.value = stream.id;
    option.textContent = `${stream.id} (${stream.state})`;
    select.append(option);
  }
  const wanted = new URLSearchParams(location.search).get("source");
  if (wanted && [...select.options].some((o) => o.value === wanted)) select.value = wanted;
  showSource();
}

function showSource() {
  const id = $("source").value;
  $("preview").hidden = Boolean(id);
  $("source-view").hidden = !id;
  $("source-view").src = id ? withToken(`/api/streams/${encodeURIComponent(id)}/mjpeg?width=640`) : "";
}

$("source").addEventListener("change", showSource);
$("connect").addEventListener("click", () => (state.wanted ? disconnect() : connect()));
$("start").addEventListener("click", startStreaming);
$("stop").addEventListener("click", stopStreaming);
// A closed page must not leave its session (and the model's connection) open on the server.
window.addEventListener("pagehide", disconnect);

// /ws/video needs the API token: find out now rather than at the first failed connect.
loadSources();
fetch("/api/config").then((resp) => {
  if (resp.status === 403) setConn("this page needs the API token (a viewer token is read-only)");
}).catch(() => {});
