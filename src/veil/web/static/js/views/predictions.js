// The Predictions tab: images kept by prediction calls that asked to store them (until the project's retention
// purges them), with what the model said; select and delete any of them now.
import { del, get, post, tr, veil } from "../api.js";
import { confirmDialog, emptyState, errorBox, fill, h, percent, spinner, timeAgo, toast } from "../dom.js";
import { ThumbnailLoader } from "../thumbnails.js";

const PAGE = 48;

export async function render(el, page, project) {
  const thumbnails = new ThumbnailLoader(page);
  page.onLeave(() => thumbnails.stop());
  const policyNote = h("p", { class: "muted small" });
  const iterationSelect = h("select", { "aria-label": "Iteration", onchange: () => restart() }, h("option", { value: "" }, "All iterations"));
  const application = h("input", { type: "search", placeholder: "Application", "aria-label": "Application", onchange: () => restart() });
  const bar = h("div", { class: "selection-bar", hidden: true });
  const grid = h("div", { class: "image-grid", id: "prediction-grid" });
  const more = h("button", { hidden: true, onclick: () => loadMore() }, "Load more");
  fill(
    el,
    h(
      "div",
      { class: "card" },
      h("h2", {}, "Stored predictions"),
      policyNote,
      h("div", { class: "filters" }, h("label", {}, "Iteration", iterationSelect), h("label", {}, "Application", application)),
      bar,
      grid,
      h("div", { class: "row" }, more),
    ),
  );

  const selected = new Set();
  let token = null;

  const [policy, iterations, tags] = await Promise.all([
    get(veil`projects/${project.id}/privacy`).catch(() => null),
    get(tr`projects/${project.id}/iterations`).catch(() => []),
    get(tr`projects/${project.id}/tags`).catch(() => []),
  ]);
  if (policy) {
    policyNote.textContent = policy.store_predictions
      ? `A prediction is kept only when the caller asks (the storing routes, or quick test with “keep”). Kept images are purged after ${policy.retention_days} day(s).`
      : "This project's privacy policy forbids storing predictions: nothing new is kept.";
  }
  iterations.forEach((it) => iterationSelect.append(h("option", { value: it.id }, it.name)));

  function renderBar() {
    bar.hidden = selected.size === 0;
    const tagChoice = h("select", { "aria-label": "Tag", id: "prediction-tag" }, tags.map((t) => h("option", { value: t.id }, t.name)));
    // Classification only: a detection image needs boxes, which are drawn on the Images tab afterwards.
    const canAdd = project.me.can("images.write") && tags.length && !project.isDetection;
    fill(
      bar,
      h("strong", {}, `${selected.size} selected`),
      canAdd ? [tagChoice, h("button", { class: "primary small", onclick: () => addToTraining(tagChoice.value) }, "Add to training images")] : null,
      project.me.can("predictions.write") ? h("button", { class: "danger small", onclick: () => removeSelected() }, "Delete now") : null,
      h("span", { class: "grow" }),
      h("button", { class: "link small", onclick: () => clearSelection() }, "Clear"),
    );
  }

  function tile(result) {
    const img = h("img", { alt: "", decoding: "async" });
    const top = result.predictions.slice().sort((a, b) => b.probability - a.probability);
    const shown = project.isDetection ? top.filter((p) => p.probability >= 0.5) : top.slice(0, 2);
    const node = h(
      "figure",
      { class: "tile", dataset: { predictionId: result.id } },
      h(
        "div",
        { class: "thumb" },
        img,
        h(
          "label",
          { class: "tile-select", title: "Select" },
          h("input", {
            type: "checkbox",
            "aria-label": "Select prediction",
            onchange: (e) => {
              if (e.target.checked) selected.add(result.id);
              else selected.delete(result.id);
              node.classList.toggle("selected", e.target.checked);
              renderBar();
            },
          }),
        ),
      ),
      h(
        "figcaption",
        { class: "small" },
        project.isDetection
          ? h("div", {}, `${shown.length} box(es) ≥ 50%`)
          : shown.map((p) => h("div", {}, `${p.tagName} ${percent(p.probability, 0)}`)),
        h("div", { class: "muted" }, timeAgo(result.created)),
      ),
    );
    const uri = result.thumbnailUri || result.resizedImageUri || result.originalImageUri;
    if (uri && project.me.can("images.bytes")) thumbnails.queue(img, uri);
    else node.querySelector(".thumb").classList.add("withheld");
    return node;
  }

  async function loadMore() {
    const query = {
      maxCount: PAGE,
      orderBy: "Newest",
      iterationId: iterationSelect.value || null,
      application: application.value.trim() || null,
      continuation: token ? token.continuation : null,
    };
    try {
      const answer = await post(tr`projects/${project.id}/predictions/query`, { json: query });
      if (!page.alive) return;
      if (!token && !answer.results.length) {
        fill(grid, emptyState("No stored predictions.", "Predictions made with the nostore routes are never kept."));
      } else {
        if (!token) fill(grid);
        answer.results.forEach((r) => grid.append(tile(r)));
      }
      token = answer.token;
      more.hidden = !answer.token || !answer.token.continuation;
    } catch (err) {
      fill(grid, errorBox(err));
    }
  }

  function clearSelection() {
    selected.clear();
    grid.querySelectorAll(".tile.selected").forEach((t) => t.classList.remove("selected"));
    grid.querySelectorAll("input[type=checkbox]").forEach((c) => (c.checked = false));
    renderBar();
  }

  async function addToTraining(tagId) {
    const ids = [...selected];
    try {
      const summary = await post(tr`projects/${project.id}/images/predictions`, { json: { images: ids.map((id) => ({ id })), tagIds: [tagId] } });
      const stored = summary.images.filter((r) => r.status.startsWith("OK")).length;
      const name = (tags.find((t) => t.id === tagId) || {}).name;
      toast(`${stored} of ${ids.length} image(s) added to the training images as “${name}”.`, stored === ids.length ? "ok" : "error");
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function removeSelected() {
    const ids = [...selected];
    const ok = await confirmDialog({
      title: `Delete ${ids.length} stored prediction(s)?`,
      body: "Their kept images and results are deleted now, before the retention would.",
      confirmLabel: "Delete",
    });
    if (!ok) return;
    try {
      for (let i = 0; i < ids.length; i += 64) await del(tr`projects/${project.id}/predictions`, { query: { ids: ids.slice(i, i + 64) } });
      toast(`Deleted ${ids.length} stored prediction(s).`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    restart();
  }

  function restart() {
    token = null;
    selected.clear();
    renderBar();
    thumbnails.reset();
    fill(grid, spinner("Loading stored predictions…"));
    loadMore();
  }

  restart();
}
