// Small DOM helpers. Text is always set as text (never innerHTML): names, tags and messages come
// from users and the server, and must never become markup.

/**
 * Create an element: h("button", {class: "primary", onclick: fn}, "Save").
 * Attributes starting with "on" become listeners; `dataset` and `style` objects are merged;
 * booleans toggle the attribute; null/undefined/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "style") {
      // Through the CSSOM, which the portal's Content-Security-Policy allows (a style attribute it would not).
      if (typeof value === "string") el.style.cssText = value;
      else Object.assign(el.style, value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A transient message at the bottom of the page (role=status, so screen readers hear it). */
export function toast(message, kind = "info") {
  let tray = document.getElementById("toasts");
  if (!tray) {
    tray = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(tray);
  }
  const note = h("div", { class: `toast toast-${kind}` }, message);
  tray.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 8000 : 4000);
}

/** Ask before something irreversible; resolves true only when the user confirms. */
export function confirmDialog({ title, body, confirmLabel = "Delete", danger = true }) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm" },
      h("h3", {}, title),
      h("p", {}, body),
      h(
        "form",
        { method: "dialog", class: "row end" },
        h("button", { value: "cancel", type: "submit" }, "Cancel"),
        h("button", { value: "ok", type: "submit", class: danger ? "danger" : "primary" }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** "3 minutes ago"-style text for ISO timestamps, with the exact time as a tooltip. */
export function timeAgo(iso) {
  if (!iso) return h("span", {}, "—");
  const then = new Date(iso);
  const seconds = Math.round((Date.now() - then.getTime()) / 1000);
  const units = [
    ["year", 31536000],
    ["month", 2592000],
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
  ];
  let text = "just now";
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) {
      text = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(-Math.round(seconds / size), unit);
      break;
    }
  }
  return h("time", { datetime: iso, title: then.toLocaleString() }, text);
}

/** 0.9312 → "93.1%"; null → "—". */
export function percent(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return `${(value * 100).toFixed(digits)}%`;
}

/** Seconds → "1 min 20 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A labelled pill: status strings get a colour by meaning. */
export function badge(text, tone) {
  const guess = {
    Completed: "ok",
    Done: "ok",
    Published: "ok",
    Training: "busy",
    Exporting: "busy",
    Queued: "busy",
    Running: "busy",
    Failed: "bad",
    Canceled: "muted",
    Cancelled: "muted",
  }[text];
  return h("span", { class: `badge badge-${tone || guess || "muted"}` }, text);
}

/** A busy placeholder used while a section loads. */
export function spinner(label = "Loading…") {
  return h("div", { class: "loading" }, h("span", { class: "spin", "aria-hidden": "true" }), label);
}

/** An inline error box with the server's message (never a stack trace). */
export function errorBox(error) {
  const code = error && error.code ? h("code", {}, error.code) : null;
  return h("div", { class: "alert alert-error", role: "alert" }, code, " ", error.message || String(error));
}

/** An empty-state panel that tells the user what to do next. */
export function emptyState(title, hint) {
  return h("div", { class: "empty" }, h("strong", {}, title), hint ? h("p", {}, hint) : null);
}
