// Requests to the agent's API with the operator's session token (kept for this browser tab only)
// and errors that carry the server's reason. Shared by the dashboard (app.js) and the health card.
const TOKEN_KEY = "ems-token";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(v) { if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY); },
};

export const authHeaders = () => {
  const tk = session.token;
  return tk ? { Authorization: `Bearer ${tk}` } : {};
};

// JSON in and out; a non-2xx answer throws an Error with the server's detail and `status`.
export async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.body ? { "Content-Type": "application/json" } : {}), ...(opts.headers || {}) } });
  let body = null;
  try { body = await r.json(); } catch { /* empty or not JSON */ }
  if (!r.ok) {
    let detail = body?.detail ?? `HTTP ${r.status}`;
    if (Array.isArray(detail)) detail = detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
    throw Object.assign(new Error(detail), { status: r.status });
  }
  return body;
}
