// Live pictures of many streams over one WebSocket (/ws/wall). A browser opens at most six
// HTTP/1.1 connections to one server: a page with more MJPEG <img>s than that leaves the
// extra pictures, and every other request of the page, waiting. The page says which streams
// it shows (`want`); each picture arrives as one binary message (4-byte big-endian header
// length, JSON header {stream, seq, ts}, JPEG) and goes into that stream's <img>.
"use strict";

class PictureSocket {
  // imgOf(id): the <img> showing stream id, or null; onPicture(img, head): after each one.
  constructor(fps, imgOf, onPicture = () => {}) {
    Object.assign(this, { fps, imgOf, onPicture, ws: null, width: null, wanted: [], timer: null });
  }

  connect(width, delay = 500) {
    this.width = width;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(withToken(`${proto}://${location.host}/ws/wall?fps=${this.fps}&width=${width}`));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => { delay = 500; this.want(this.wanted); };
    ws.onmessage = (msg) => {
      if (typeof msg.data === "string") { console.warn("pictures:", JSON.parse(msg.data).message); return; }
      this.show(msg.data);
    };
    ws.onclose = () => {
      if (this.ws === ws) setTimeout(() => this.connect(this.width, Math.min(delay * 2, 10000)), delay);
    };
  }

  want(ids) {
    this.wanted = ids;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ streams: this.wanted }));
    }, 50);
  }

  close() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  show(data) {
    const n = new DataView(data).getUint32(0);
    const head = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, n)));
    const img = this.imgOf(head.stream);
    if (!img) return;
    const old = img.dataset.url;
    const url = URL.createObjectURL(new Blob([new Uint8Array(data, 4 + n)], { type: "image/jpeg" }));
    img.src = url;
    img.dataset.url = url;
    if (old) URL.revokeObjectURL(old);
    this.onPicture(img, head);
  }
}
