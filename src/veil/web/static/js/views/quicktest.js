// Quick test: send one image to a trained iteration and see what it predicts (boxes drawn for detection).
import { get, request, tr } from "../api.js";
import { emptyState, errorBox, fill, h, percent, spinner } from "../dom.js";

export async function render(el, page, project) {
  let iterations;
  try {
    iterations = (await get(tr`projects/${project.id}/iterations`)).filter((it) => it.status === "Completed");
  } catch (err) {
    fill(el, errorBox(err));
    return;
  }
  if (!iterations.length) {
    fill(el, h("div", { class: "card" }, emptyState("No trained iteration yet.", "Train one on the Training tab, then test it here.")));
    return;
  }
  iterations.sort((a, b) => (b.created || "").localeCompare(a.created || ""));

  const select = h(
    "select",
    { id: "quicktest-iteration", "aria-label": "Iteration" },
    iterations.map((it) => h("option", { value: it.id }, it.publishName ? `${it.name} (published as ${it.publishName})` : it.name)),
  );
  const keep = h("input", { type: "checkbox", id: "quicktest-store" });
  const picker = h("input", { type: "file", accept: "image/*", id: "quicktest-file", hidden: true, onchange: (e) => e.target.files[0] && run(e.target.files[0]) });
  const threshold = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: project.isDetection ? 0.3 : 0, "aria-label": "Show predictions above" });
  const thresholdValue = h("output", {}, "");
  const result = h("div", { class: "quicktest-result" });
  let last = null; // {bitmap, predictions}

  threshold.addEventListener("input", () => last && draw(last));

  async function run(file) {
    fill(result, spinner("Predicting…"));
    const form = new FormData();
    form.append("imageData", file, file.name);
    try {
      const [prediction, bitmap] = await Promise.all([
        request("POST", tr`projects/${project.id}/quicktest/image`, { form, query: { iterationId: select.value, store: keep.checked ? "true" : "false" } }),
        createImageBitmap(file, { imageOrientation: "from-image" }),
      ]);
      last = { bitmap, predictions: prediction.predictions || [] };
      draw(last);
    } catch (err) {
      fill(result, errorBox(err));
    }
  }

  function draw({ bitmap, predictions }) {
    const min = Number(threshold.value);
    thresholdValue.textContent = percent(min, 0);
    const above = predictions.filter((p) => p.probability >= min).sort((a, b) => b.probability - a.probability);
    const shown = above.slice(0, MAX_SHOWN);
    // One colour per tag, so boxes of the same tag read as one kind of thing.
    const tagOrder = [...new Set(predictions.map((p) => p.tagName))];
    const colourOf = (p) => colour(tagOrder.indexOf(p.tagName));
    const canvas = h("canvas", { class: "preview", id: "quicktest-canvas" });
    const scale = Math.min(1, 720 / bitmap.width);
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    if (project.isDetection) drawBoxes(ctx, canvas, shown, colourOf);
    fill(
      result,
      canvas,
      h(
        "ol",
        { class: "predictions", id: "predictions" },
        shown.length
          ? shown.map((p) =>
              h(
                "li",
                {},
                h("span", { class: "swatch", style: { background: colourOf(p) } }),
                h("span", { class: "tag-name" }, p.tagName),
                h("span", { class: "meter" }, h("span", { style: { width: `${(p.probability * 100).toFixed(1)}%` } })),
                h("span", { class: "num" }, percent(p.probability)),
              ),
            )
          : h("li", { class: "muted" }, "Nothing above the threshold."),
        above.length > shown.length ? h("li", { class: "muted small" }, `and ${above.length - shown.length} more above the threshold (raise it to see fewer)`) : null,
      ),
    );
  }

  // The whole card takes a dropped image, as the upload area does.
  const dropTarget = {
    ondragover: (e) => {
      e.preventDefault();
      e.currentTarget.classList.add("over");
    },
    ondragleave: (e) => e.currentTarget.classList.remove("over"),
    ondrop: (e) => {
      e.preventDefault();
      e.currentTarget.classList.remove("over");
      const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/")) || e.dataTransfer.files[0];
      if (file) run(file);
    },
  };
  fill(
    el,
    h(
      "div",
      { class: "card quicktest", ...dropTarget },
      h("h2", {}, "Quick test"),
      h("p", { class: "muted small" }, "Choose an image or drop one here."),
      h(
        "div",
        { class: "row wrap" },
        h("label", {}, "Iteration ", select),
        h("label", { class: "inline-field", title: "Off: the image is not kept anywhere" }, keep, " Keep the image with its prediction (project retention applies)"),
        h("button", { class: "primary", onclick: () => picker.click() }, "Choose an image…"),
        picker,
      ),
      h("label", { class: "slider" }, "Show predictions above ", threshold, thresholdValue),
      result,
    ),
  );
  thresholdValue.textContent = percent(Number(threshold.value), 0);
  page.onLeave(() => last && last.bitmap.close());
}

const MAX_SHOWN = 25; // predictions listed and boxes drawn; more would hide the image

function colour(i) {
  const palette = ["#0f766e", "#b45309", "#7c3aed", "#be123c", "#1d4ed8", "#15803d", "#a16207", "#0e7490"];
  return palette[i % palette.length];
}

function drawBoxes(ctx, canvas, predictions, colourOf) {
  ctx.lineWidth = 2;
  ctx.font = "13px system-ui, sans-serif";
  predictions.forEach((p) => {
    const box = p.boundingBox;
    if (!box) return;
    const x = box.left * canvas.width;
    const y = box.top * canvas.height;
    const w = box.width * canvas.width;
    const hgt = box.height * canvas.height;
    ctx.strokeStyle = colourOf(p);
    ctx.strokeRect(x, y, w, hgt);
    const label = `${p.tagName} ${(p.probability * 100).toFixed(0)}%`;
    const tw = ctx.measureText(label).width + 8;
    ctx.fillStyle = colourOf(p);
    ctx.fillRect(x, Math.max(0, y - 18), tw, 18);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x + 4, Math.max(13, y - 5));
  });
}
