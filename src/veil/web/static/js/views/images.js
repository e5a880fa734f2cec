// The Images tab: tags (create, rename, delete, filter), the image grid with thumbnails, selection for bulk
// tagging and deleting; uploads live in upload.js, the box editor in regions.js, the viewer in viewer.js.
import { del, get, patch, post, tr } from "../api.js";
import { confirmDialog, emptyState, errorBox, fill, h, spinner, toast } from "../dom.js";
import { boxFrame } from "../boxes.js";
import { ThumbnailLoader } from "../thumbnails.js";
import { openRegionEditor } from "./regions.js";
import { SuggestedView } from "./suggested.js";
import { Uploader } from "./upload.js";
import { openViewer } from "./viewer.js";

const PAGE_SIZE = 48;

export async function render(el, page, project) {
  const { me } = project;
  const state = {
    tags: [],
    filterTags: new Set(),
    status: "All", // All | Tagged | Untagged | Suggested (untagged images with the smart labeler's suggestions)
    skip: 0,
    selected: new Map(), // image id → image, on the current page only
    pageImages: [], // the images on screen, in order (the viewer steps through them)
  };

  const tagPanel = h("aside", { class: "sidebar card", "aria-label": "Tags" });
  const gridHead = h("div", { class: "grid-head" });
  const selectionBar = h("div", { class: "selection-bar", id: "selection-bar", hidden: true });
  const suggestBar = h("div", { class: "suggest-bar", id: "suggest-bar", hidden: true });
  const grid = h("div", { class: "image-grid", id: "image-grid" });
  const pager = h("div", { class: "pager" });
  const uploader = me.can("images.write") ? new Uploader(project, () => reloadAfterLabelling()) : null;
  fill(el, h("div", { class: "with-sidebar" }, tagPanel, h("div", { class: "main-col" }, uploader && uploader.panel, gridHead, suggestBar, selectionBar, grid, pager)));

  const thumbnails = new ThumbnailLoader(page);
  page.onLeave(() => thumbnails.stop());
  const suggested = new SuggestedView(project, thumbnails, { toolbar: suggestBar, grid, pager, selectionBar }, () => reloadAfterLabelling());

  async function reloadTags() {
    try {
      state.tags = await get(tr`projects/${project.id}/tags`);
    } catch (err) {
      fill(tagPanel, errorBox(err));
      return;
    }
    for (const id of [...state.filterTags]) if (!state.tags.some((t) => t.id === id)) state.filterTags.delete(id);
    renderTags();
    if (uploader) uploader.setTags(state.tags);
  }

  function renderTags() {
    const nameInput = h("input", { name: "tagName", placeholder: "New tag name", maxlength: 200, required: true, "aria-label": "New tag name" });
    const typeSelect = project.isDetection
      ? null
      : h(
          "select",
          { name: "tagType", "aria-label": "Tag type", title: "A Negative tag marks images that show none of the other tags" },
          h("option", { value: "Regular" }, "Regular"),
          h("option", { value: "Negative" }, "Negative"),
        );
    async function addTag(event) {
      event.preventDefault();
      try {
        await post(tr`projects/${project.id}/tags`, { query: { name: nameInput.value.trim(), type: typeSelect ? typeSelect.value : "Regular" } });
        nameInput.value = "";
        await reloadTags();
        await reloadImages();
      } catch (err) {
        toast(err.message, "error");
      }
    }
    fill(
      tagPanel,
      h("h2", {}, "Tags"),
      state.tags.length
        ? h(
            "ul",
            { class: "tag-list", id: "tag-list" },
            state.tags.map((tag) =>
              h(
                "li",
                { dataset: { tagId: tag.id } },
                h(
                  "label",
                  { class: "tag-filter", title: "Show only images with this tag" },
                  h("input", {
                    type: "checkbox",
                    checked: state.filterTags.has(tag.id),
                    onchange: (e) => {
                      if (e.target.checked) state.filterTags.add(tag.id);
                      else state.filterTags.delete(tag.id);
                      state.skip = 0;
                      reloadImages();
                    },
                  }),
                  h(
                    "span",
                    {
                      class: "tag-name",
                      title: me.can("tags.write") ? "Double-click to rename" : null,
                      ondblclick: (e) => {
                        if (!me.can("tags.write")) return;
                        e.preventDefault();
                        renameTag(tag, e.currentTarget);
                      },
                    },
                    tag.name,
                  ),
                  tag.type === "Negative" ? h("span", { class: "chip chip-quiet" }, "negative") : null,
                ),
                h("span", { class: "count" }, String(tag.imageCount ?? 0)),
                me.can("tags.write")
                  ? h("button", { class: "icon danger", title: `Delete tag ${tag.name}`, "aria-label": `Delete tag ${tag.name}`, onclick: () => removeTag(tag) }, "×")
                  : null,
              ),
            ),
          )
        : h("p", { class: "muted small" }, "No tags yet. Add the labels your model should learn."),
      me.can("tags.write") ? h("form", { class: "add-tag", onsubmit: addTag }, nameInput, typeSelect, h("button", { type: "submit" }, "Add tag")) : null,
    );
  }

  /** Swap the tag's name for an input; Enter saves (PATCH), Escape or leaving the field cancels. */
  function renameTag(tag, nameEl) {
    const input = h("input", { class: "rename", value: tag.name, maxlength: 200, "aria-label": `New name for ${tag.name}` });
    let done = false;
    async function finish(save) {
      if (done) return;
      done = true;
      const name = input.value.trim();
      if (save && name && name !== tag.name) {
        try {
          await patch(tr`projects/${project.id}/tags/${tag.id}`, { json: { name } });
          toast(`Renamed “${tag.name}” to “${name}”.`, "ok");
        } catch (err) {
          toast(err.message, "error");
        }
        await reloadTags();
        await reloadImages();
      } else {
        renderTags();
      }
    }
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        finish(true);
      } else if (e.key === "Escape") {
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(false));
    nameEl.replaceWith(input);
    input.focus();
    input.select();
  }

  async function removeTag(tag) {
    const ok = await confirmDialog({
      title: `Delete tag “${tag.name}”?`,
      body: `It is removed from ${tag.imageCount ?? 0} image(s). The images themselves stay.`,
      confirmLabel: "Delete tag",
    });
    if (!ok) return;
    try {
      await del(tr`projects/${project.id}/tags/${tag.id}`);
      toast(`Deleted tag “${tag.name}”.`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    await reloadTags();
    await reloadImages();
  }

  function renderGridHead(counts) {
    const option = (value, label) =>
      h(
        "button",
        {
          class: state.status === value ? "seg active" : "seg",
          "aria-pressed": String(state.status === value),
          onclick: () => {
            state.status = value;
            state.skip = 0;
            reloadImages();
          },
        },
        label,
      );
    fill(
      gridHead,
      h("h2", {}, "Images"),
      h(
        "div",
        { class: "segmented", role: "group", "aria-label": "Tagging status" },
        option("All", `All (${counts.all})`),
        option("Tagged", `Tagged (${counts.tagged})`),
        option("Untagged", `Untagged (${counts.untagged})`),
        me.can("images.write") && counts.untagged ? option("Suggested", "Suggested") : null,
      ),
      state.filterTags.size
        ? h(
            "span",
            { class: "muted small" },
            "Filtered by ",
            [...state.filterTags].map((id) => (state.tags.find((t) => t.id === id) || {}).name).join(", "),
            " ",
            h("button", { class: "link", onclick: () => { state.filterTags.clear(); renderTags(); reloadImages(); } }, "clear"),
          )
        : null,
    );
  }

  let loadNo = 0; // the newest grid request; answers to older ones are dropped

  async function reloadImages() {
    const mine = ++loadNo;
    thumbnails.reset();
    state.selected.clear();
    renderSelectionBar();
    fill(grid, spinner("Loading images…"));
    const tagIds = [...state.filterTags];
    suggestBar.hidden = state.status !== "Suggested";
    if (state.status === "Suggested") return reloadSuggested(mine, tagIds);
    // The page of images is drawn as soon as it arrives (thumbnails start at once); counts follow.
    const list = get(tr`projects/${project.id}/images`, {
      query: { taggingStatus: state.status, tagIds, take: PAGE_SIZE, skip: state.skip, orderBy: "Newest" },
    });
    const counts = Promise.all([
      get(tr`projects/${project.id}/images/count`, { query: { tagIds } }),
      get(tr`projects/${project.id}/images/count`, { query: { taggingStatus: "Tagged", tagIds } }),
      get(tr`projects/${project.id}/images/count`, { query: { taggingStatus: "Untagged" } }),
    ]).then(([all, tagged, untagged]) => ({ all, tagged, untagged: tagIds.length ? 0 : untagged }));
    try {
      const images = await list;
      if (!page.alive || mine !== loadNo) return;
      state.pageImages = images;
      if (images.length) fill(grid, images.map((image) => imageTile(image)));
      const known = await counts;
      if (!page.alive || mine !== loadNo) return;
      renderGridHead(known);
      if (!images.length) {
        fill(grid, emptyState("No images here.", known.all ? "Try another filter." : "Drop some images above to get started."));
      }
      renderPager(state.status === "All" ? known.all : state.status === "Tagged" ? known.tagged : known.untagged);
    } catch (err) {
      if (mine === loadNo) fill(grid, errorBox(err));
    }
  }

  /** The Suggested view: untagged images with the latest iteration's suggestions (suggested.js). */
  async function reloadSuggested(mine, tagIds) {
    const untagged = await get(tr`projects/${project.id}/images/count`, { query: { taggingStatus: "Untagged" } }).catch(() => 0);
    if (!page.alive || mine !== loadNo) return;
    const [all, tagged] = await Promise.all([
      get(tr`projects/${project.id}/images/count`, { query: { tagIds } }),
      get(tr`projects/${project.id}/images/count`, { query: { taggingStatus: "Tagged", tagIds } }),
    ]).catch(() => [0, 0]);
    renderGridHead({ all, tagged, untagged });
    await suggested.load(tagIds, state.tags);
  }

  function imageTile(image) {
    const selectable = me.can("images.write") || me.can("tags.write");
    const img = h("img", { alt: "", width: 160, height: 120, decoding: "async" });
    const tile = h(
      "figure",
      { class: "tile", dataset: { imageId: image.id } },
      h(
        "div",
        {
          class: "thumb",
          tabindex: "0",
          role: "button",
          "aria-label": project.isDetection ? "Edit this image's boxes" : "Open this image",
          onclick: (e) => onThumbClick(e, image, tile),
          onkeydown: (e) => {
            if (e.target === e.currentTarget && (e.key === "Enter" || e.key === " ")) {
              e.preventDefault();
              onThumbClick(e, image, tile);
            }
          },
        },
        project.isDetection && (image.regions || []).length ? withBoxes(img, image) : img,
        selectable
          ? h(
              "label",
              { class: "tile-select", title: "Select", onclick: (e) => e.stopPropagation() },
              h("input", { type: "checkbox", "aria-label": "Select image", onchange: (e) => toggleSelected(image, tile, e.target.checked) }),
            )
          : null,
        me.can("images.write")
          ? h("button", { class: "tile-delete", title: "Delete image", "aria-label": "Delete image", onclick: (e) => { e.stopPropagation(); removeImage(image); } }, "×")
          : null,
      ),
      h(
        "figcaption",
        {},
        project.isDetection ? regionChips(image) : tagChips(image),
        h("span", { class: "muted small dims" }, image.width && image.height ? `${image.width}×${image.height}` : ""),
      ),
    );
    if (me.can("images.bytes")) thumbnails.queue(img, image.thumbnailUri || image.resizedImageUri || image.originalImageUri);
    else tile.querySelector(".thumb").classList.add("withheld"); // this role sees metadata, never pixels
    return tile;
  }

  function onThumbClick(event, image, tile) {
    if (project.isDetection && me.can("regions.write") && me.can("images.bytes")) {
      openRegionEditor(project, image, state.tags).then((changed) => changed && reloadAfterLabelling());
      return;
    }
    if (me.can("images.bytes")) {
      const index = state.pageImages.findIndex((i) => i.id === image.id);
      openViewer(project, state.pageImages, index, state.tags, me.can("images.write")).then((changed) => changed && reloadAfterLabelling());
      return;
    }
    const box = tile.querySelector(".tile-select input");
    if (!box) return;
    box.checked = !box.checked;
    toggleSelected(image, tile, box.checked);
  }

  function toggleSelected(image, tile, on) {
    if (on) state.selected.set(image.id, image);
    else state.selected.delete(image.id);
    tile.classList.toggle("selected", on);
    renderSelectionBar();
  }

  function renderSelectionBar() {
    const count = state.selected.size;
    selectionBar.hidden = count === 0;
    if (!count) return fill(selectionBar);
    const tagSelect = h("select", { "aria-label": "Tag", id: "bulk-tag" }, state.tags.map((t) => h("option", { value: t.id }, t.name)));
    const canTag = !project.isDetection && me.can("images.write") && state.tags.length;
    fill(
      selectionBar,
      h("strong", {}, `${count} selected`),
      canTag
        ? [
            tagSelect,
            h("button", { class: "primary small", onclick: () => tagSelected(tagSelect.value, true) }, "Add tag"),
            h("button", { class: "small", onclick: () => tagSelected(tagSelect.value, false) }, "Remove tag"),
          ]
        : null,
      me.can("images.write") ? h("button", { class: "danger ghost small", onclick: () => deleteSelected() }, "Delete") : null,
      h("span", { class: "grow" }),
      h("button", { class: "link small", onclick: () => setAllSelected(true) }, "Select page"),
      h("button", { class: "link small", onclick: () => setAllSelected(false) }, "Clear"),
    );
  }

  function setAllSelected(on) {
    for (const tile of grid.querySelectorAll(".tile")) {
      const box = tile.querySelector(".tile-select input");
      if (box && box.checked !== on) {
        box.checked = on;
        box.dispatchEvent(new Event("change"));
      }
    }
  }

  async function tagSelected(tagId, add) {
    const ids = [...state.selected.keys()];
    try {
      for (const chunk of chunks(ids, 64)) {
        if (add) await post(tr`projects/${project.id}/images/tags`, { json: { tags: chunk.map((imageId) => ({ imageId, tagId })) } });
        else await del(tr`projects/${project.id}/images/tags`, { query: { imageIds: chunk, tagIds: [tagId] } });
      }
      const name = (state.tags.find((t) => t.id === tagId) || {}).name;
      toast(`${add ? "Tagged" : "Untagged"} ${ids.length} image(s) ${add ? "with" : "from"} “${name}”.`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    await reloadAfterLabelling();
  }

  async function deleteSelected() {
    const ids = [...state.selected.keys()];
    const ok = await confirmDialog({ title: `Delete ${ids.length} image(s)?`, body: "Their encrypted bytes, tags and boxes are deleted.", confirmLabel: "Delete images" });
    if (!ok) return;
    try {
      for (const chunk of chunks(ids, 256)) await del(tr`projects/${project.id}/images`, { query: { imageIds: chunk } });
      toast(`Deleted ${ids.length} image(s).`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    await reloadAfterLabelling();
  }

  async function reloadAfterLabelling() {
    await reloadTags();
    await reloadImages();
  }

  function tagChips(image) {
    const tags = image.tags || [];
    if (!tags.length) return h("span", { class: "chip chip-quiet" }, "untagged");
    return tags.map((t) => h("span", { class: "chip" }, t.tagName || (state.tags.find((x) => x.id === t.tagId) || {}).name || "tag"));
  }

  /** Detection images: one chip per tag with its number of boxes (click the image to edit them). */
  function regionChips(image) {
    const regions = image.regions || [];
    if (!regions.length) return h("span", { class: "chip chip-quiet" }, "no boxes");
    const counts = new Map();
    for (const r of regions) counts.set(r.tagName, (counts.get(r.tagName) || 0) + 1);
    return [...counts].map(([name, n]) => h("span", { class: "chip" }, n > 1 ? `${name} ×${n}` : name));
  }

  async function removeImage(image) {
    const ok = await confirmDialog({ title: "Delete this image?", body: "Its encrypted bytes and its tags are deleted.", confirmLabel: "Delete image" });
    if (!ok) return;
    try {
      await del(tr`projects/${project.id}/images`, { query: { imageIds: [image.id] } });
    } catch (err) {
      toast(err.message, "error");
    }
    await reloadTags();
    await reloadImages();
  }

  function renderPager(total) {
    const from = total ? state.skip + 1 : 0;
    const to = Math.min(state.skip + PAGE_SIZE, total);
    fill(
      pager,
      h("button", { disabled: state.skip === 0, onclick: () => { state.skip = Math.max(0, state.skip - PAGE_SIZE); reloadImages(); } }, "← Newer"),
      h("span", { class: "muted small" }, `${from}–${to} of ${total}`),
      h("button", { disabled: to >= total, onclick: () => { state.skip += PAGE_SIZE; reloadImages(); } }, "Older →"),
    );
  }

  await Promise.all([reloadTags(), reloadImages()]);
}

/** A detection thumbnail shown whole with its labelled boxes over it: labelling progress at a glance. */
function withBoxes(img, image) {
  const { frame, setBoxes } = boxFrame(img, image.width, image.height);
  setBoxes(image.regions.map((r) => ({ ...r, title: r.tagName, kind: "truth" })));
  return frame;
}

function chunks(items, size) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
