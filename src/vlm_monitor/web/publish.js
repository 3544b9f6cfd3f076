// WHIP publisher (RFC 9725): camera -> RTCPeerConnection -> POST /whip/{stream}. No CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { stream: null, pc: null, location: null };

function show(text, cls) { $("state").textContent = text; $("state").className = `badge ${cls || ""}`; }

$("camera").addEventListener("click", async () => {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    $("preview").srcObject = state.stream;
    $("publish").disabled = false;
    show("camera on");
  } catch (err) { $("status").textContent = `camera: ${err.message}`; }
});

function iceComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // publish with what has been gathered
  });
}

$("publish-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("stream").value;
  const pc = new RTCPeerConnection();
  state.pc = pc;
  for (const track of state.stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  pc.addEventListener("connectionstatechange", () => {
    show(pc.connectionState, pc.connectionState === "connected" ? "live" : "");
    $("publish").dataset.state = pc.connectionState;
  });
  await pc.setLocalDescription(await pc.createOffer());
  await iceComplete(pc); // no trickle: the offer carries the candidates
  const headers = { "Content-Type": "application/sdp" };
  if ($("token").value) headers.Authorization = `Bearer ${$("token").value}`;
  const resp = await fetch(`/whip/${encodeURIComponent(name)}`, { method: "POST", headers, body: pc.localDescription.sdp });
  if (resp.status !== 201) {
    const data = await resp.json().catch(() => ({}));
    $("status").textContent = `publish refused (${resp.status}): ${data.error || ""}`;
    pc.close();
    return;
  }
  state.location = resp.headers.get("Location");
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  $("status").textContent = `publishing as ${name}`;
  $("publish").disabled = true; $("stop").disabled = false;
});

async function stop() {
  if (state.location) {
    const headers = $("token").value ? { Authorization: `Bearer ${$("token").value}` } : {};
    await fetch(state.location, { method: "DELETE", headers }).catch(() => {});
    state.location = null;
  }
  if (state.pc) { state.pc.close(); state.pc = null; }
  $("publish").disabled = !state.stream; $("stop").disabled = true;
  show("stopped");
}

$("stop").addEventListener("click", stop);
window.addEventListener("pagehide", stop);
