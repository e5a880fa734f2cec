// The portal's only door to Veil: the same REST API a curl user calls, with the key the user pasted.
// The key lives in sessionStorage (this tab only, gone when it closes); image bytes are held only as
// in-memory blob: URLs that are revoked when the page changes — nothing is cached on disk by the portal.

export const TRAINING = "/customvision/v3.3/training";
export const VEIL = "/veil/v1";

const KEY_SLOT = "veil.apiKey";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY_SLOT);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_SLOT, value);
    else sessionStorage.removeItem(KEY_SLOT);
  },
};

/** An error the server reported, in Custom Vision's `{code, message}` shape when it gave one. */
export class ApiError extends Error {
  constructor(status, code, message, body = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body; // the parsed JSON answer, when there was one (a refused batch lists each image)
  }
}

function buildUrl(path, query) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) {
      if (value.length) url.searchParams.set(name, value.join(","));
    } else {
      url.searchParams.set(name, String(value));
    }
  }
  return url.pathname + url.search;
}

async function readError(response) {
  let code = `Http${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  let body = null;
  try {
    body = await response.json();
    const inner = body.error && typeof body.error === "object" ? body.error : body;
    if (inner.code) code = inner.code;
    if (inner.message) message = inner.message;
    else if (typeof body.detail === "string") message = body.detail;
    else if (Array.isArray(body.detail)) message = body.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  } catch {
    // Not JSON (a proxy's HTML page, say): the status line is all there is.
  }
  if (response.status === 401 && !message.toLowerCase().includes("key")) {
    message = `The server refused this key: ${message}`;
  }
  return new ApiError(response.status, code, message, body);
}

/** Listeners told when the server says the key is no longer good (revoked, expired). */
const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

/** Listeners told when the key's role forbids something (the portal learns the role from it). */
const forbiddenListeners = new Set();
export function onForbidden(listener) {
  forbiddenListeners.add(listener);
}

/**
 * Call the API. `json` sends a JSON body, `form` a FormData (multipart), `as` picks the reply:
 * "json" (default), "blob" or "response".
 */
export async function request(method, path, { query, json, form, as = "json", key } = {}) {
  const headers = { "Training-Key": key || session.key || "" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(buildUrl(path, query), { method, headers, body, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "NetworkError", `Could not reach the Veil server (${err.message}).`);
  }
  if (!response.ok) {
    const error = await readError(response);
    if (response.status === 401 && !key) unauthorizedListeners.forEach((fn) => fn(error));
    if (response.status === 403 && !key) forbiddenListeners.forEach((fn) => fn(error));
    throw error;
  }
  if (as === "response") return response;
  if (as === "blob") return response.blob();
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, options) => request("POST", path, options);
export const patch = (path, options) => request("PATCH", path, options);
export const put = (path, options) => request("PUT", path, options);
export const del = (path, options) => request("DELETE", path, options);

/** Training API path helper: tr`projects/${id}/tags`. */
export function tr(strings, ...values) {
  return TRAINING + "/" + strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ""), "");
}

/** Veil's own API path helper: veil`projects/${id}/policy`. */
export function veil(strings, ...values) {
  return VEIL + "/" + strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ""), "");
}

/**
 * Blob URLs for authenticated images. Each page owns one pool and revokes it when it is left,
 * so decrypted pixels live only as long as they are on screen.
 */
export class BlobPool {
  constructor() {
    this.urls = new Set();
  }

  async load(path) {
    const blob = await request("GET", path, { as: "blob" });
    const url = URL.createObjectURL(blob);
    this.urls.add(url);
    return url;
  }

  release(url) {
    if (this.urls.delete(url)) URL.revokeObjectURL(url);
  }

  releaseAll() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls.clear();
  }
}
