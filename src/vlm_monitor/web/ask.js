// Ask a live camera: a question box on each stream card, answered by a VLM from the camera's
// last seconds of frames (POST /api/streams/{id}/ask). Cards are built by app.js; this file
// only adds its box to each new card.
"use strict";

(() => {
  const WINDOWS_S = [5, 10, 30];
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = "/ask.css";
  document.head.append(css);

  function attach(card) {
    if (card.querySelector(".ask")) return;
    const box = document.createElement("div");
    box.className = "ask";
    // No <form>/submit button here: the add-stream form's button stays the page's first.
    box.innerHTML = `
      <div class="ask-row">
        <input class="ask-q" type="text" maxlength="2000" placeholder="Ask this camera…"
          aria-label="question about this camera">
        <select class="ask-window" aria-label="look back" title="seconds of video to look at">
          ${WINDOWS_S.map((s) => `<option value="${s}"${s === 10 ? " selected" : ""}>last ${s} s</option>`).join("")}
        </select>
        <button class="ask-go" type="button">Ask</button>
      </div>
      <p class="ask-answer" aria-live="polite"></p>
      <p class="ask-meta"></p>`;
    const go = () => ask(card, box);
    box.querySelector(".ask-go").addEventListener("click", go);
    box.querySelector(".ask-q").addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(); });
    const before = card.querySelector(".results") || card.querySelector(".remove");
    card.insertBefore(box, before);
  }

  async function ask(card, box) {
    const question = box.querySelector(".ask-q").value.trim();
    const answer = box.querySelector(".ask-answer");
    const meta = box.querySelector(".ask-meta");
    const button = box.querySelector(".ask-go");
    if (!question || button.disabled) return;
    button.disabled = true;
    box.dataset.state = "asking";
    answer.textContent = "Looking…";
    meta.textContent = "";
    try {
      const resp = await fetch(`/api/streams/${encodeURIComponent(card.dataset.stream)}/ask`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ question, window_s: Number(box.querySelector(".ask-window").value) }),
      });
      const data = await resp.json().catch(() => ({}));
      if (resp.ok) {
        box.dataset.state = "answered";
        answer.textContent = data.answer;
        meta.textContent = `${data.provider} · ${data.frames} frame${data.frames === 1 ? "" : "s"} · ${data.latency_s.toFixed(2)} s`;
      } else {
        // 409: no provider can answer (only the offline `local` one); the message names the fix.
        box.dataset.state = "error";
        box.dataset.status = resp.status;
        answer.textContent = data.error || `error ${resp.status}`;
      }
    } catch (err) {
      box.dataset.state = "error";
      answer.textContent = `the server did not answer: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  }

  const streams = document.getElementById("streams");
  streams.querySelectorAll("article.stream").forEach(attach);
  new MutationObserver((changes) => {
    for (const change of changes) {
      change.addedNodes.forEach((node) => { if (node.matches && node.matches("article.stream")) attach(node); });
    }
  }).observe(streams, { childList: true });
})();
