// Anonymize: hide the faces in a photo and get it back, with Veil keeping nothing (`POST /veil/v1/anonymize`:
// no blob, no row, no audit event). The original is shown from the local file; only the answer comes back.
import { ApiError, request, veil } from "../api.js";
import { errorBox, fill, h, spinner } from "../dom.js";

const METHODS = [
  ["solid", "Solid fill"],
  ["pixelate", "Pixelate"],
  ["blur", "Gaussian blur"],
  ["dp-pixelate", "DP-Pix (pixelation with differential-privacy noise)"],
];

export async function render(el, page) {
  const method = h("select", { id: "anonymize-method", "aria-label": "Method" }, METHODS.map(([v, label]) => h("option", { value: v }, label)));
  const picker = h("input", { type: "file", accept: "image/*", id: "anonymize-file", hidden: true, onchange: (e) => e.target.files[0] && run(e.target.files[0]) });
  const result = h("div", { class: "anonymize-result", id: "anonymize-result" });
  const urls = [];
  page.onLeave(() => urls.forEach((u) => URL.revokeObjectURL(u)));
  let lastFile = null;
  method.addEventListener("change", () => lastFile && run(lastFile));

  async function run(file) {
    lastFile = file;
    fill(result, spinner("Hiding faces…"));
    const form = new FormData();
    form.append("imageData", file, file.name);
    try {
      const response = await request("POST", veil`anonymize`, { form, query: { targets: "faces", method: method.value }, as: "response" });
      const hidden = Number(response.headers.get("X-Veil-Hidden") || 0);
      const after = URL.createObjectURL(await response.blob());
      const before = URL.createObjectURL(file);
      urls.push(after, before);
      const name = file.name.replace(/(\.[^.]+)?$/, "-anonymized$1");
      fill(
        result,
        h(
          "div",
          { class: "before-after" },
          h("figure", {}, h("img", { src: before, alt: "The original (this browser only)" }), h("figcaption", {}, "Original — shown from your disk, never stored")),
          h("figure", {}, h("img", { src: after, alt: "The anonymized image", id: "anonymized-image" }), h("figcaption", { id: "anonymized-caption" }, `${hidden} face(s) hidden`)),
        ),
        h("a", { class: "button primary", href: after, download: name }, "Download the anonymized image"),
      );
    } catch (err) {
      fill(result, errorBox(err instanceof ApiError ? err : { message: String(err) }));
    }
  }

  fill(
    el,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Anonymize a photo"), h("p", { class: "muted" }, "Faces are found with CenterFace and hidden; Veil keeps nothing — no image, no record."))),
    h(
      "div",
      {
        class: "card quicktest",
        ondragover: (e) => {
          e.preventDefault();
          e.currentTarget.classList.add("over");
        },
        ondragleave: (e) => e.currentTarget.classList.remove("over"),
        ondrop: (e) => {
          e.preventDefault();
          e.currentTarget.classList.remove("over");
          if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
        },
      },
      h("div", { class: "row wrap" }, h("label", {}, "Method ", method), h("button", { class: "primary", onclick: () => picker.click() }, "Choose a photo…"), picker),
      h("p", { class: "muted small" }, "Or drop a photo here. Projects can do this to every upload: see a project's Privacy & settings."),
      result,
    ),
  );
}
