// The smart labeler in the Images tab: untagged images with the tags (or boxes) the latest trained iteration
// suggests, most certain first, through Custom Vision's `images/suggested` route. Accept applies the suggestion
// as labels (image tags, or regions for detection) in bulk; Reject hides an image from this list.
import { get, post, tr } from "../api.js";
import { emptyState, errorBox, fill, h, percent, spinner, toast } from "../dom.js";
import { boxFrame } from "../boxes.js";

export const DEFAULT_THRESHOLD = 0.5; // the server's default too (Custom Vision's probability threshold)
const PAGE_SIZE = 48;

export class SuggestedView {
  /** `els`: {toolbar, grid, pager, selectionBar}; `onLabelled()` reloads counts and tags after accepting. */
  constructor(project, thumbnails, els, onLabelled) {
    this.project = project;
    this.thumbnails = thumbnails;
    this.els = els;
    this.onLabelled = onLabelled;
    this.threshold = DEFAULT_THRESHOLD;
    this.iteration = null;
    this.results = [];
    this.token = null; // the query token of the page on screen (session + continuation for the next)
    this.selected = new Set();
    this.rejected = new Set();
  }

  async load(tagIds, tags) {
    this.tags = tags;
    this.tagIds = tagIds;
    this.selected.clear();
    fill(this.els.grid, spinner("Asking the latest iteration…"));
    try {
      if (!this.iteration) {
        const iterations = await get(tr`projects/${this.project.id}/iterations`);
        this.iteration = iterations.find((it) => it.status === "Completed") || null;
      }
      this.renderToolbar();
      if (!this.iteration) {
        fill(this.els.grid, emptyState("No suggestions yet.", "Train an iteration (Training tab); its predictions label the untagged images."));
        fill(this.els.pager);
        return;
      }
      await this.fetchPage(null);
    } catch (err) {
      fill(this.els.grid, errorBox(err));
    }
  }

  async fetchPage(token) {
    const query = token || { tagIds: this.tagIds.length ? this.tagIds : null, threshold: this.threshold, maxCount: PAGE_SIZE };
    const page = await post(tr`projects/${this.project.id}/images/suggested`, {
      query: { iterationId: this.iteration.id },
      json: { ...query, threshold: this.threshold, sortBy: "UncertaintyAscending" },
    });
    this.token = page.token;
    this.results = page.results.filter((r) => !this.rejected.has(r.id));
    this.renderGrid();
    this.renderPager();
  }

  renderToolbar() {
    const label = h("output", { id: "suggest-threshold-value" }, percent(this.threshold, 0));
    const slider = h("input", {
      type: "range", min: "0.05", max: "0.99", step: "0.01", value: String(this.threshold), id: "suggest-threshold",
      "aria-label": "Suggestion threshold",
      oninput: (e) => { label.textContent = percent(Number(e.target.value), 0); },
      onchange: (e) => { this.threshold = Number(e.target.value); this.load(this.tagIds, this.tags); },
    });
    fill(
      this.els.toolbar,
      this.iteration ? h("span", { class: "muted small" }, `Suggested by ${this.iteration.name} · at least `) : null,
      this.iteration ? [slider, label] : null,
      h("span", { class: "grow" }),
      this.iteration ? h("button", { class: "primary small", id: "accept-all", onclick: () => this.accept(this.results) }, "Accept all shown") : null,
    );
    this.els.toolbar.hidden = false;
  }

  renderGrid() {
    this.thumbnails.reset();
    if (!this.results.length) {
      fill(this.els.grid, emptyState("Nothing suggested at this threshold.", "Lower the threshold, or label a few more images and train again."));
      this.renderSelectionBar();
      return;
    }
    fill(this.els.grid, this.results.map((r) => this.tile(r)));
    this.renderSelectionBar();
  }

  tile(result) {
    const img = h("img", { alt: "", width: 160, height: 120, decoding: "async" });
    const boxes = this.project.isDetection;
    let picture = img;
    if (boxes && result.width && result.height) {
      const { frame, setBoxes } = boxFrame(img, result.width, result.height);
      setBoxes(result.predictions.filter((p) => p.boundingBox).map((p) => ({ ...p.boundingBox, title: `${p.tagName} ${percent(p.probability, 0)}`, kind: "predicted" })));
      picture = frame;
    }
    const tile = h(
      "figure",
      { class: "tile suggested", dataset: { imageId: result.id } },
      h(
        "div",
        { class: "thumb" },
        picture,
        h("label", { class: "tile-select", title: "Select" }, h("input", { type: "checkbox", "aria-label": "Select image", onchange: (e) => this.toggle(result, tile, e.target.checked) })),
      ),
      h("figcaption", {}, this.chips(result), h("span", { class: "muted small" }, `uncertainty ${percent(result.predictionUncertainty ?? 0, 0)}`)),
    );
    this.thumbnails.queue(img, result.thumbnailUri || result.resizedImageUri || result.originalImageUri);
    return tile;
  }

  chips(result) {
    const shown = this.suggestion(result);
    if (!shown.length) return h("span", { class: "chip chip-quiet" }, "no suggestion");
    if (this.project.isDetection) {
      const counts = new Map();
      for (const p of shown) counts.set(p.tagName, (counts.get(p.tagName) || 0) + 1);
      return [...counts].map(([name, n]) => h("span", { class: "chip chip-suggested" }, n > 1 ? `${name} ×${n}` : name));
    }
    return shown.map((p) => h("span", { class: "chip chip-suggested", title: "suggested" }, `${p.tagName} ${percent(p.probability, 0)}`));
  }

  /** What accepting applies: multiclass the most probable tag; multilabel every tag; detection every box. */
  suggestion(result) {
    const above = result.predictions.filter((p) => p.probability >= this.threshold);
    if (this.project.isDetection || this.project.settings?.classificationType === "Multilabel") return above;
    return above.slice(0, 1);
  }

  toggle(result, tile, on) {
    if (on) this.selected.add(result.id);
    else this.selected.delete(result.id);
    tile.classList.toggle("selected", on);
    this.renderSelectionBar();
  }

  renderSelectionBar() {
    const bar = this.els.selectionBar;
    const count = this.selected.size;
    bar.hidden = count === 0;
    if (!count) return fill(bar);
    const chosen = () => this.results.filter((r) => this.selected.has(r.id));
    fill(
      bar,
      h("strong", {}, `${count} selected`),
      h("button", { class: "primary small", id: "accept-selected", onclick: () => this.accept(chosen()) }, "Accept suggestions"),
      h("button", { class: "small", id: "reject-selected", onclick: () => this.reject(chosen()) }, "Reject"),
    );
  }

  async accept(results) {
    const labels = results.map((r) => ({ id: r.id, picks: this.suggestion(r) })).filter((r) => r.picks.length);
    if (!labels.length) return toast("Nothing to accept at this threshold.", "error");
    try {
      if (this.project.isDetection) {
        const regions = labels.flatMap((r) => r.picks.map((p) => ({ imageId: r.id, tagId: p.tagId, ...p.boundingBox })));
        for (const chunk of chunks(regions, 64)) await post(tr`projects/${this.project.id}/images/regions`, { json: { regions: chunk } });
      } else {
        const pairs = labels.flatMap((r) => r.picks.map((p) => ({ imageId: r.id, tagId: p.tagId })));
        for (const chunk of chunks(pairs, 64)) await post(tr`projects/${this.project.id}/images/tags`, { json: { tags: chunk } });
      }
      toast(`Labelled ${labels.length} image(s) from the suggestions.`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    await this.onLabelled();
  }

  reject(results) {
    for (const r of results) this.rejected.add(r.id);
    this.selected.clear();
    this.results = this.results.filter((r) => !this.rejected.has(r.id));
    toast(`Hid ${results.length} suggestion(s); the images stay untagged.`, "info");
    this.renderGrid();
  }

  renderPager() {
    const more = this.token && this.token.continuation;
    fill(
      this.els.pager,
      h("button", { disabled: !this.token || !this.pageStart, onclick: () => { this.pageStart = 0; this.fetchPage(null); } }, "← First"),
      h("span", { class: "muted small" }, `${this.results.length} suggested here`),
      h("button", { disabled: !more, onclick: () => { this.pageStart = 1; this.fetchPage(this.token); } }, "More →"),
    );
  }
}

function chunks(items, size) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
