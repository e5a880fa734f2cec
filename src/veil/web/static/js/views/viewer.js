// A larger view of one classification image with its tags (add, remove), stepping through the current page
// with ← and →. The pixels are fetched with the key and live only as long as the dialog.
import { del, post, request, tr } from "../api.js";
import { errorBox, fill, h, spinner, timeAgo } from "../dom.js";

/** Open the viewer at `index` of `images`; resolves true when any tag was changed. */
export function openViewer(project, images, index, tags, canEdit) {
  return new Promise((resolve) => {
    let changed = false;
    let position = index;
    let objectUrl = null;
    let shownId = null;

    const picture = h("div", { class: "viewer-picture" });
    const side = h("div", { class: "viewer-side" });
    const counter = h("span", { class: "muted small" });
    const previous = h("button", { class: "small", "aria-label": "Previous image", onclick: () => step(-1) }, "←");
    const next = h("button", { class: "small", "aria-label": "Next image", onclick: () => step(1) }, "→");
    const dialog = h(
      "dialog",
      { class: "viewer", id: "image-viewer" },
      h(
        "div",
        { class: "row between" },
        h("div", { class: "row" }, previous, next, counter),
        h("form", { method: "dialog" }, h("button", { class: "ghost", value: "close" }, "Close")),
      ),
      h("div", { class: "viewer-body" }, picture, side),
    );

    function releasePicture() {
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = null;
    }

    async function show() {
      const image = images[position];
      shownId = image.id;
      counter.textContent = `${position + 1} of ${images.length}`;
      previous.disabled = position === 0;
      next.disabled = position === images.length - 1;
      renderSide(image);
      fill(picture, spinner("Loading image…"));
      try {
        const blob = await request("GET", image.resizedImageUri || image.originalImageUri, { as: "blob" });
        if (shownId !== image.id || !dialog.open) return; // the user moved on meanwhile
        releasePicture();
        objectUrl = URL.createObjectURL(blob);
        fill(picture, h("img", { src: objectUrl, alt: "", id: "viewer-image" }));
      } catch (err) {
        if (shownId === image.id) fill(picture, errorBox(err));
      }
    }

    function renderSide(image) {
      const own = new Set((image.tags || []).map((t) => t.tagId));
      const addable = tags.filter((t) => !own.has(t.id));
      const choice = h("select", { "aria-label": "Tag to add", id: "viewer-tag" }, addable.map((t) => h("option", { value: t.id }, t.name)));
      const message = h("div", { class: "viewer-message" });
      fill(
        side,
        h("strong", {}, "Tags"),
        h(
          "div",
          { class: "chips", id: "viewer-tags" },
          (image.tags || []).length
            ? image.tags.map((t) =>
                h(
                  "span",
                  { class: "chip chip-removable" },
                  t.tagName,
                  canEdit ? h("button", { class: "chip-x", "aria-label": `Remove tag ${t.tagName}`, onclick: () => change(image, t.tagId, false, message) }, "×") : null,
                ),
              )
            : h("span", { class: "chip chip-quiet" }, "untagged"),
        ),
        canEdit && addable.length
          ? h("div", { class: "row" }, choice, h("button", { class: "small primary", onclick: () => change(image, choice.value, true, message) }, "Add tag"))
          : null,
        message,
        canEdit && tags.length
          ? h(
              "p",
              { class: "muted small" },
              "Keys: ← → move; ",
              tags.slice(0, 9).map((t, i) => `${i + 1} ${t.name}`).join(", "),
              " toggle a tag.",
            )
          : null,
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Size"),
          h("dd", {}, `${image.width} × ${image.height} px`),
          h("dt", {}, "Added"),
          h("dd", {}, timeAgo(image.created)),
          Object.entries(image.metadata || {}).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        ),
      );
    }

    async function change(image, tagId, add, message) {
      fill(message);
      try {
        if (add) await post(tr`projects/${project.id}/images/tags`, { json: { tags: [{ imageId: image.id, tagId }] } });
        else await del(tr`projects/${project.id}/images/tags`, { query: { imageIds: [image.id], tagIds: [tagId] } });
        const tag = tags.find((t) => t.id === tagId);
        image.tags = add
          ? [...(image.tags || []), { tagId, tagName: tag ? tag.name : "tag", created: new Date().toISOString() }]
          : (image.tags || []).filter((t) => t.tagId !== tagId);
        changed = true;
        renderSide(image);
      } catch (err) {
        fill(message, errorBox(err));
      }
    }

    function step(delta) {
      const target = position + delta;
      if (target < 0 || target >= images.length) return;
      position = target;
      show();
    }

    // On the window: focus may sit on a button that was just disabled (the first or last image).
    function onKey(event) {
      if (event.target instanceof HTMLSelectElement || event.target instanceof HTMLInputElement) return;
      if (event.key === "ArrowLeft") step(-1);
      if (event.key === "ArrowRight") step(1);
      // 1–9 toggle the first nine tags on this image: labelling without the mouse.
      const digit = Number(event.key);
      if (canEdit && Number.isInteger(digit) && digit >= 1 && digit <= Math.min(9, tags.length)) {
        const image = images[position];
        const tag = tags[digit - 1];
        const has = (image.tags || []).some((t) => t.tagId === tag.id);
        change(image, tag.id, !has, side.querySelector(".viewer-message"));
      }
    }
    window.addEventListener("keydown", onKey);
    dialog.addEventListener("close", () => {
      window.removeEventListener("keydown", onKey);
      releasePicture();
      dialog.remove();
      resolve(changed);
    });
    document.body.append(dialog);
    dialog.showModal();
    show();
  });
}
