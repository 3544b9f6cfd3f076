// The wall's tiles and their pictures, over one socket for all tiles (pictures.js). Only
// tiles on screen get pictures.
"use strict";

const tileEls = new Map(); // stream id -> <article>
const THUMB_FPS = 2;
const THUMB_WIDTHS = [160, 240, 320, 480, 640]; // a few sizes, so walls share encodes

function tileOf(seat, onOpen) {
  let el = tileEls.get(seat.id);
  if (el) return el;
  el = document.querySelector("#tile").content.firstElementChild.cloneNode(true);
  el.dataset.stream = seat.id;
  el.querySelector(".name").textContent = seat.id;
  el.addEventListener("click", () => onOpen(seat.id));
  document.querySelector("#grid").append(el);
  tileEls.set(seat.id, el);
  thumbs.observer.observe(el);
  return el;
}

function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 60 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
}

function renderTile(seat, onOpen) {
  const el = tileOf(seat, onOpen);
  const st = seat.status;
  el.dataset.state = st.state || "";
  el.dataset.attention = seat.attention || "";
  el.querySelector(".name").title = seat.session
    ? `${seat.id} · session ${seat.session.session_id}${seat.session.exam_id ? ` · exam ${seat.session.exam_id}` : ""}`
    : seat.id;
  const stale = el.querySelector(".stale");
  stale.hidden = !st.state || st.state === "live";
  stale.textContent = st.state || "";
  const att = el.querySelector(".attention");
  att.textContent = ATTENTION_LABELS[seat.attention] || "";
  const emo = el.querySelector(".emotion");
  emo.textContent = seat.emotion ? EMOTION_ICONS[seat.emotion] || seat.emotion : "";
  emo.title = seat.emotion || "no face";
  el.dataset.emotion = seat.emotion || "";
  el.querySelector(".hr").textContent = seat.bpm == null ? "" : `♥ ${seat.bpm.toFixed(0)}`;
  const worst = worstSeverity(seat);
  if (worst) el.dataset.alert = worst; else delete el.dataset.alert;
  const first = problems(seat)[0];
  el.querySelector(".problem").textContent = first
    ? `${first.title} ${ago(first.started_at)}${seat.open.size > 1 ? ` +${seat.open.size - 1}` : ""}`
    : "";
  return el;
}

// Visual order through CSS `order`: moving the nodes would restart their pictures.
function placeTiles(ordered) {
  const shown = new Set(ordered.map((s) => s.id));
  ordered.forEach((s, i) => { const el = tileEls.get(s.id); if (el) { el.style.order = i; el.hidden = false; } });
  for (const [id, el] of tileEls) if (!shown.has(id)) el.hidden = true;
}

function dropTile(id) {
  const el = tileEls.get(id);
  if (!el) return;
  thumbs.observer.unobserve(el);
  const old = el.querySelector("img").dataset.url;
  if (old) URL.revokeObjectURL(old);
  el.remove();
  tileEls.delete(id);
}

const thumbs = {
  paused: false,
  onScreen: new Set(),
  socket: new PictureSocket(THUMB_FPS, (id) => tileEls.get(id)?.querySelector("img") ?? null, (img, head) => {
    const el = tileEls.get(head.stream);
    el.dataset.seq = head.seq;
    el.dataset.frameTs = head.ts;
    el.dataset.pictures = Number(el.dataset.pictures || 0) + 1;
  }),
  observer: new IntersectionObserver((entries) => {
    for (const e of entries) {
      const id = e.target.dataset.stream;
      if (e.isIntersecting) thumbs.onScreen.add(id); else thumbs.onScreen.delete(id);
    }
    thumbs.announce();
  }, { rootMargin: "200px" }),

  get ws() { return this.socket.ws; },

  // The smallest of a few widths that fills a tile's picture at this screen's pixel density.
  pickWidth() {
    const img = document.querySelector("#grid .tile:not([hidden]) .pic");
    const need = (img ? img.clientWidth : 240) * (window.devicePixelRatio || 1);
    return THUMB_WIDTHS.find((w) => w >= need) || THUMB_WIDTHS[THUMB_WIDTHS.length - 1];
  },

  announce() {
    this.socket.want(this.paused ? [] : [...this.onScreen].filter((id) => tileEls.has(id)));
  },

  pause(paused) { this.paused = paused; this.announce(); },

  connect() { this.announce(); this.socket.connect(this.pickWidth()); },

  // A different picture width after a resize needs a new channel (the server encodes once
  // per width); the same width keeps the one there is.
  resized() {
    if (this.pickWidth() === this.socket.width || !this.socket.ws) return;
    this.socket.close();
    this.connect();
  },
};
