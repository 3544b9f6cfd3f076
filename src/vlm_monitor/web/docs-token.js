// /docs and /redoc need the API token. A browser reaches them by a link, with ?token=; the
// pages then fetch /openapi.json and, in Swagger UI's "Try it out", the API itself: those
// fetches get the same token as an Authorization header. Without ?token=, the token the
// dashboard keeps in localStorage is used. Loaded before the Swagger UI / ReDoc bundles, so
// they see this fetch.
(() => {
  const token =
    new URLSearchParams(location.search).get("token") ||
    localStorage.getItem("vlm-monitor-token") ||
    "";
  if (!token) return;
  const nativeFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    const url = new URL(typeof input === "string" ? input : input.url, location.href);
    if (url.origin !== location.origin) return nativeFetch(input, init);
    const headers = new Headers(init.headers || (typeof input === "string" ? {} : input.headers));
    // Swagger UI's own "Authorize" or a header typed into "Try it out" wins.
    if (!headers.has("Authorization")) headers.set("Authorization", `Bearer ${token}`);
    return nativeFetch(input, { ...init, headers });
  };
})();
