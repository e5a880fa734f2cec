// The box editor for object-detection images: draw a box with the mouse to add a region with the chosen
// tag, remove a region from the list, or ask for region proposals (the project's detector, else a generic
// objectness model) and add one with a click. Every change is saved at once through Custom Vision's routes.
import { del, post, request, tr } from "../api.js";
import { errorBox, fill, h, percent, spinner, toast } from "../dom.js";

const MIN_SIDE = 0.01; // boxes thinner than 1 % of the image are accidental clicks
const MAX_CANVAS = 820;
const PALETTE = ["#0f766e", "#b45309", "#7c3aed", "#be123c", "#1d4ed8", "#15803d", "#a16207", "#0e7490"];

/** Open the editor in a modal dialog; resolves true when any region was added or removed. */
export function openRegionEditor(project, image, tags) {
  return new Promise((resolve) => {
    let changed = false;
    let regions = [...(image.regions || [])];
    let bitmap = null;
    let drag = null; // {x0, y0, x1, y1} normalized, while drawing
    let proposals = []; // [{confidence, boundingBox}] offered by the server, not yet added

    const colourOf = (tagId) => PALETTE[Math.max(0, tags.findIndex((t) => t.id === tagId)) % PALETTE.length];
    const canvas = h("canvas", { class: "region-canvas", id: "region-canvas" });
    const tagSelect = h("select", { id: "region-tag", "aria-label": "Tag for new boxes" }, tags.map((t) => h("option", { value: t.id }, t.name)));
    const list = h("ul", { class: "region-list", id: "region-list" });
    const proposalList = h("ul", { class: "region-list", id: "proposal-list" });
    const proposeButton = h("button", { class: "small", id: "propose-boxes", type: "button", onclick: () => propose() }, "Propose boxes");
    const message = h("div");
    const stage = h("div", { class: "region-stage" }, spinner("Loading image…"));
    const dialog = h(
      "dialog",
      { class: "region-editor" },
      h(
        "div",
        { class: "row between" },
        h("h3", {}, "Boxes"),
        h("form", { method: "dialog" }, h("button", { class: "ghost", value: "close" }, "Done")),
      ),
      tags.length
        ? h("p", { class: "muted small" }, "Drag on the image to draw a box for ", tagSelect, ", or ", proposeButton,
            " and click one (dashed) to add it. Boxes are saved as you draw them.")
        : errorBox({ message: "Create a tag first (left panel); each box needs one." }),
      h("div", { class: "region-body" }, stage, h("div", { class: "region-side" }, h("strong", {}, "Regions"), list, proposalList, message)),
    );

    function toNormalized(event) {
      const rect = canvas.getBoundingClientRect();
      return {
        x: Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
        y: Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height)),
      };
    }

    function draw() {
      if (!bitmap) return;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      ctx.lineWidth = 2;
      ctx.font = "13px system-ui, sans-serif";
      for (const r of regions) box(ctx, r.left, r.top, r.width, r.height, colourOf(r.tagId), r.tagName);
      ctx.setLineDash([4, 4]);
      for (const p of proposals) box(ctx, p.boundingBox.left, p.boundingBox.top, p.boundingBox.width, p.boundingBox.height, "#f59e0b", null);
      ctx.setLineDash([]);
      if (drag) {
        const { left, top, width, height } = dragBox(drag);
        ctx.setLineDash([6, 4]);
        box(ctx, left, top, width, height, colourOf(tagSelect.value), null);
        ctx.setLineDash([]);
      }
    }

    function box(ctx, left, top, width, height, colour, label) {
      const x = left * canvas.width;
      const y = top * canvas.height;
      ctx.strokeStyle = colour;
      ctx.strokeRect(x, y, width * canvas.width, height * canvas.height);
      if (!label) return;
      const w = ctx.measureText(label).width + 8;
      ctx.fillStyle = colour;
      ctx.fillRect(x, Math.max(0, y - 18), w, 18);
      ctx.fillStyle = "#fff";
      ctx.fillText(label, x + 4, Math.max(13, y - 5));
    }

    function renderList() {
      fill(
        list,
        regions.length
          ? regions.map((r) =>
              h(
                "li",
                { dataset: { regionId: r.regionId } },
                h("span", { class: "swatch", style: { background: colourOf(r.tagId) } }),
                h("span", { class: "tag-name" }, r.tagName),
                h("span", { class: "muted small" }, `${Math.round(r.width * 100)}×${Math.round(r.height * 100)}%`),
                h("button", { class: "icon danger", "aria-label": `Remove ${r.tagName} box`, onclick: () => removeRegion(r) }, "×"),
              ),
            )
          : h("li", { class: "muted small" }, "No boxes yet."),
      );
    }

    function renderProposals() {
      fill(
        proposalList,
        proposals.length ? h("li", { class: "muted small" }, "Proposed (dashed):") : null,
        proposals.map((p, index) =>
          h(
            "li",
            { dataset: { proposal: String(index) } },
            h("span", { class: "muted small" }, `${percent(p.confidence, 0)} · ${Math.round(p.boundingBox.width * 100)}×${Math.round(p.boundingBox.height * 100)}%`),
            h("button", { class: "small", "aria-label": "Add this proposed box", onclick: () => acceptProposal(p) }, "Add"),
          ),
        ),
      );
    }

    async function propose() {
      proposeButton.disabled = true;
      try {
        const found = await post(tr`projects/${project.id}/images/${image.id}/regionproposals`);
        // Boxes already labelled are not proposed again.
        proposals = found.proposals.filter((p) => !regions.some((r) => overlap(r, p.boundingBox) >= 0.7));
        if (!proposals.length) toast("No more boxes to propose for this image.", "info");
      } catch (err) {
        fill(message, errorBox(err));
      }
      proposeButton.disabled = false;
      renderProposals();
      draw();
    }

    async function acceptProposal(proposal) {
      proposals = proposals.filter((p) => p !== proposal);
      renderProposals();
      const { left, top, width, height } = proposal.boundingBox;
      await addRegion({ left, top, width, height });
    }

    /** The smallest proposal under a click (a click, not a drag, on the image). */
    function proposalAt(x, y) {
      const inside = proposals.filter((p) => x >= p.boundingBox.left && x <= p.boundingBox.left + p.boundingBox.width
        && y >= p.boundingBox.top && y <= p.boundingBox.top + p.boundingBox.height);
      inside.sort((a, b) => a.boundingBox.width * a.boundingBox.height - b.boundingBox.width * b.boundingBox.height);
      return inside[0] || null;
    }

    async function addRegion(rect) {
      const tagId = tagSelect.value;
      try {
        const summary = await post(tr`projects/${project.id}/images/regions`, { json: { regions: [{ imageId: image.id, tagId, ...rect }] } });
        if (summary.created.length) {
          regions = regions.concat(summary.created);
          changed = true;
        } else {
          toast(summary.exceeded.length ? "This image has as many boxes as allowed." : "That box is already there.", "error");
        }
      } catch (err) {
        fill(message, errorBox(err));
      }
      renderList();
      draw();
    }

    async function removeRegion(region) {
      try {
        await del(tr`projects/${project.id}/images/regions`, { query: { regionIds: [region.regionId] } });
        regions = regions.filter((r) => r.regionId !== region.regionId);
        changed = true;
      } catch (err) {
        fill(message, errorBox(err));
      }
      renderList();
      draw();
    }

    if (tags.length) {
      canvas.addEventListener("pointerdown", (event) => {
        const p = toNormalized(event);
        drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
        canvas.setPointerCapture(event.pointerId);
      });
      canvas.addEventListener("pointermove", (event) => {
        if (!drag) return;
        const p = toNormalized(event);
        drag.x1 = p.x;
        drag.y1 = p.y;
        draw();
      });
      canvas.addEventListener("pointerup", () => {
        if (!drag) return;
        const rect = dragBox(drag);
        const clicked = proposalAt(drag.x0, drag.y0);
        drag = null;
        draw();
        if (rect.width >= MIN_SIDE && rect.height >= MIN_SIDE) addRegion(rect);
        else if (clicked) acceptProposal(clicked);
      });
    }

    dialog.addEventListener("close", () => {
      if (bitmap) bitmap.close();
      dialog.remove();
      resolve(changed);
    });
    document.body.append(dialog);
    dialog.showModal();
    renderList();

    // Decoded straight from the authenticated response: the pixels live only in this dialog's bitmap.
    request("GET", image.resizedImageUri || image.originalImageUri, { as: "blob" })
      .then(async (blob) => {
        bitmap = await createImageBitmap(blob);
        const scale = Math.min(1, MAX_CANVAS / bitmap.width, 560 / bitmap.height);
        canvas.width = Math.round(bitmap.width * scale);
        canvas.height = Math.round(bitmap.height * scale);
        fill(stage, canvas);
        draw();
      })
      .catch((err) => fill(stage, errorBox(err)));
  });
}

function overlap(a, b) {
  const x = Math.max(0, Math.min(a.left + a.width, b.left + b.width) - Math.max(a.left, b.left));
  const y = Math.max(0, Math.min(a.top + a.height, b.top + b.height) - Math.max(a.top, b.top));
  const inter = x * y;
  return inter / (a.width * a.height + b.width * b.height - inter);
}

function dragBox({ x0, y0, x1, y1 }) {
  return { left: Math.min(x0, x1), top: Math.min(y0, y1), width: Math.abs(x1 - x0), height: Math.abs(y1 - y0) };
}
