// One student, opened from the wall: the full-size live view, the analyzer panel of the
// dashboard's card (analysis.js, proctor.js), their events and the proctor's report of their
// session (proctor.js draws it as the card does).
"use strict";

const detail = {
  id: null,
  el: document.querySelector("#detail"),
  events: new Map(), // event id -> <li>

  q(sel) { return this.el.querySelector(sel); },

  open(id) {
    const seat = seats.get(id);
    if (!seat) return;
    this.id = id;
    this.el.dataset.stream = id;
    this.q(".d-name").textContent = id;
    this.q(".d-view").src = withToken(`/api/streams/${encodeURIComponent(id)}/mjpeg`);
    this.resetAnalysis();
    this.q(".d-events").replaceChildren();
    this.events.clear();
    this.render(seat);
    this.el.hidden = false;
    this.q(".d-close").focus();
    this.loadEvents(id);
    this.loadReport(seat);
  },

  close() {
    if (this.id == null) return null;
    const id = this.id;
    this.id = null;
    this.q(".d-view").removeAttribute("src"); // ends the full-size stream
    this.el.hidden = true;
    return id;
  },

  // analysis.js keeps each card's charts in a WeakMap: a fresh, empty panel for each student.
  resetAnalysis() {
    const holder = document.createElement("div");
    holder.className = "d-analysis";
    holder.innerHTML = '<section class="analysis" hidden></section>';
    this.q(".d-analysis").replaceWith(holder);
    this.card = holder;
  },

  render(seat) {
    if (seat.id !== this.id) return;
    const st = seat.status;
    const state = this.q(".d-state");
    state.textContent = st.state || "";
    state.className = `badge d-state ${st.state || ""}`;
    const s = seat.session;
    this.q(".d-session").textContent = s
      ? `session ${s.session_id}${s.exam_id ? ` · exam ${s.exam_id}` : ""}${s.student_id ? ` · student ${s.student_id}` : ""}`
      : "no session";
    this.q(".d-attention").textContent = ATTENTION_LABELS[seat.attention] || "–";
    this.q(".d-faces").textContent = seat.faces ?? "–";
    this.q(".d-fps").textContent = (st.fps_in ?? 0).toFixed(1);
    this.q(".d-size").textContent = st.width ? `${st.width}×${st.height}` : "–";
  },

  analysis(ev) {
    if (ev.stream === this.id) showAnalysis(this.card, ev);
  },

  event(e) {
    if (e.stream !== this.id) return;
    let li = this.events.get(e.id);
    if (!li) {
      li = document.createElement("li");
      this.events.set(e.id, li);
      this.q(".d-events").prepend(li);
    }
    li.dataset.state = e.state;
    li.innerHTML = '<span class="badge severity"></span> <strong></strong> <span class="when"></span><p class="sum"></p>';
    li.querySelector(".severity").textContent = e.severity;
    li.querySelector(".severity").classList.add(e.severity);
    li.querySelector("strong").textContent = e.title;
    const t = (ts) => new Date(ts * 1000).toLocaleTimeString();
    li.querySelector(".when").textContent = `${e.state} · ${t(e.started_at)}${e.ended_at ? ` – ${t(e.ended_at)}` : ""}`;
    li.querySelector(".sum").textContent = e.summary;
  },

  async loadEvents(id) {
    const resp = await fetch(`/api/events?stream=${encodeURIComponent(id)}&limit=30`);
    if (!resp.ok || this.id !== id) return;
    (await resp.json()).reverse().forEach((e) => this.event(e));
  },

  async loadReport(seat) {
    const box = this.q(".d-report");
    const sid = seat.session?.session_id;
    if (!sid) { box.innerHTML = '<p class="note">No session: this stream is not mapped to an exam.</p>'; return; }
    box.innerHTML = '<p class="note">loading…</p>';
    const resp = await fetch(`/api/sessions/${encodeURIComponent(sid)}/summary`);
    if (this.id !== seat.id) return;
    const doc = await resp.json().catch(() => ({}));
    box.replaceChildren(resp.ok ? reportView(doc) : note(doc.error || `error ${resp.status}`));
  },
};

function note(text) {
  const p = document.createElement("p");
  p.className = "note";
  p.textContent = text;
  return p;
}
