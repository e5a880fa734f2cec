// Sign in by pasting an API key. The key is checked against the server before it is kept.
import { session } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { whoAmI } from "../identity.js";

export async function render(el, _page, onSignedIn) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "Paste a Veil API key",
    "aria-describedby": "key-note",
  });
  const message = h("div", { class: "message" });
  const button = h("button", { type: "submit", class: "primary wide" }, "Sign in");

  async function submit(event) {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    fill(message);
    try {
      await whoAmI(key);
      session.key = key;
      onSignedIn();
    } catch (err) {
      whoAmI.forget();
      const text =
        err.status === 401
          ? "That key was not accepted: it is wrong, revoked or expired."
          : err.status === 403
            ? `This key cannot open the portal (${err.message}). Prediction keys only call the prediction API; use an admin, trainer, labeler or auditor key.`
            : err.message;
      fill(message, errorBox({ code: err.code, message: text }));
      input.select();
    } finally {
      button.disabled = false;
    }
  }

  fill(
    el,
    h(
      "section",
      { class: "signin card" },
      h("h1", {}, "Sign in to Veil"),
      h("p", { class: "lead" }, "Self-hosted, privacy-first custom vision. Use the API key you were given."),
      h(
        "form",
        { onsubmit: submit },
        h("label", { for: "api-key" }, "API key"),
        input,
        message,
        button,
      ),
      h(
        "p",
        { id: "key-note", class: "note" },
        "The key is kept in this tab's session storage only: it is forgotten when you close the tab or sign out, ",
        "and it is sent only to this server. An administrator creates keys with ",
        h("code", {}, "veil keys create --role admin"),
        ".",
      ),
    ),
  );
  input.focus();
}
