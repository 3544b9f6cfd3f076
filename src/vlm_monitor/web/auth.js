// The access token (server.api_token or server.viewer_token): asked for once, on the first
// 401, kept in localStorage, and sent with every same-origin request. <img> and WebSocket
// cannot carry headers, so their URLs get ?token= through withToken().
(() => {
  const KEY = "vlm-monitor-token";
  const nativeFetch = window.fetch.bind(window);

  window.vlmToken = () => localStorage.getItem(KEY) || "";

  window.withToken = (url) => {
    const token = window.vlmToken();
    if (!token) return url;
    return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
  };

  function sameOrigin(input) {
    const url = new URL(typeof input === "string" ? input : input.url, location.href);
    return url.origin === location.origin;
  }

  window.fetch = async (input, init = {}) => {
    const token = window.vlmToken();
    const ours = sameOrigin(input);
    if (token && ours) {
      const headers = new Headers(init.headers || {});
      // WHIP publishing sends its own per-stream token.
      if (!headers.has("Authorization")) headers.set("Authorization", `Bearer ${token}`);
      init = { ...init, headers };
    }
    const resp = await nativeFetch(input, init);
    if (ours && resp.status === 401) askForToken("This server needs an access token.");
    return resp;
  };

  function askForToken(why) {
    if (document.getElementById("token-dialog")) return;
    const dialog = document.createElement("form");
    dialog.id = "token-dialog";
    dialog.innerHTML = `
      <p></p>
      <input type="password" name="token" autocomplete="current-password" placeholder="token" required>
      <button type="submit">Save</button>`;
    dialog.querySelector("p").textContent = why;
    Object.assign(dialog.style, {
      position: "fixed", top: "20%", left: "50%", transform: "translateX(-50%)", zIndex: 1000,
      background: "#1d2127", color: "#eee", padding: "1.5em", border: "1px solid #555",
      borderRadius: "6px", boxShadow: "0 4px 24px #000a",
    });
    dialog.addEventListener("submit", (event) => {
      event.preventDefault();
      localStorage.setItem(KEY, dialog.elements.token.value.trim());
      location.reload();
    });
    document.body.appendChild(dialog);
    dialog.elements.token.focus();
  }

  window.vlmForgetToken = () => { localStorage.removeItem(KEY); location.reload(); };
})();
