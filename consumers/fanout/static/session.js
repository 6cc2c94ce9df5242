// Who is signed in: a bearer token kept in localStorage, taken from `?token=` once and
// removed from the address bar (it must not stay in history, bookmarks or screenshots).
// The token's claims are read only to greet the user and to key what this browser
// remembers per user; the server alone decides whether the token is any good.
"use strict";

const KEY = "ingest.token";

export function takeTokenFromUrl() {
  const url = new URL(location.href);
  if (!url.searchParams.has("token")) return;
  const given = (url.searchParams.get("token") || "").trim();
  if (given) localStorage.setItem(KEY, given);
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

export function token() {
  return localStorage.getItem(KEY) || "";
}

export function signIn(value) {
  localStorage.setItem(KEY, value.trim().replace(/^Bearer\s+/i, ""));
}

export function signOut() {
  localStorage.removeItem(KEY);
}

/** The token's payload (sub, exp, roles), or null when it is not a readable JWT. */
export function claims(value = token()) {
  const payload = value.split(".")[1];
  if (!payload) return null;
  try {
    const text = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** Calls `listener` when another tab signs in or out. */
export function onTokenChange(listener) {
  addEventListener("storage", (event) => {
    if (event.key === KEY) listener(token());
  });
}

export class ApiError extends Error {
  constructor(status, body, fallback) {
    super((body && body.error_message) || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error_code) || null;
    this.details = (body && body.details) || {};
  }
}

/** One call to the JSON API with the signed-in user's token; non-2xx answers throw ApiError. */
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data, response.statusText);
  return data;
}
