// One iteration: performance at an adjustable threshold, plots, publish/unpublish, the Export menu (every format
// the iteration exports to, run as jobs with progress, cancel and download).
import { del, get, post, request, tr, veil } from "../api.js";
import { badge, confirmDialog, errorBox, fill, h, percent, spinner, timeAgo, toast } from "../dom.js";
import { progressBar } from "../jobs.js";
import { plotUrls } from "../plots.js";
import { boxFrame } from "../boxes.js";
import { ThumbnailLoader } from "../thumbnails.js";
import { loadProject, projectHeader } from "./project.js";

const EXPORT_POLL_MS = 1500;

export async function render(el, page, projectId, iterationId) {
  fill(el, spinner("Loading iteration…"));
  let project;
  let iteration;
  try {
    [project, iteration] = await Promise.all([loadProject(projectId), get(tr`projects/${projectId}/iterations/${iterationId}`)]);
  } catch (err) {
    fill(el, errorBox(err), h("p", {}, h("a", { href: `#/projects/${projectId}/train` }, "Back to training")));
    return;
  }
  if (!page.alive) return;

  const summary = h("div", { class: "card" });
  const perfPanel = h("div", { class: "card", id: "performance" });
  const plotPanel = h("div", { class: "card", id: "plots" });
  const publishPanel = h("div", { class: "card", id: "publish" });
  const exportPanel = h("div", { class: "card", id: "export" });
  const heldOutPanel = h("div", { class: "card", id: "held-out" });
  const privacyPanel = h("div", { class: "card", id: "privacy-report" });
  fill(
    el,
    projectHeader(project, "train"),
    h("section", { class: "tab-body" }, summary, h("div", { class: "two-col" }, publishPanel, exportPanel), perfPanel, privacyPanel, plotPanel, heldOutPanel),
  );

  async function reloadIteration() {
    iteration = await get(tr`projects/${projectId}/iterations/${iterationId}`);
    renderSummary(summary, project, iteration);
    if (project.me.can("publish")) renderPublish(publishPanel, project, iteration, reloadIteration);
  }

  renderSummary(summary, project, iteration);
  if (iteration.status !== "Completed") {
    const why = iteration.status === "Failed" ? "This iteration failed; there is nothing to evaluate, publish or export." : "This iteration is still training.";
    fill(perfPanel, h("p", { class: "muted" }, why));
    [plotPanel, publishPanel, exportPanel, heldOutPanel, privacyPanel].forEach((p) => p.remove());
    return;
  }
  if (project.me.can("publish")) renderPublish(publishPanel, project, iteration, reloadIteration);
  else publishPanel.remove();
  if (project.me.can("export")) renderExport(exportPanel, page, project, iteration);
  else exportPanel.remove();
  const heldOut = heldOutImages(heldOutPanel, page, project, iteration);
  renderPerformance(perfPanel, project, iteration, (threshold) => heldOut.setThreshold(threshold));
  renderPlots(plotPanel, page, project, iteration);
  renderPrivacy(privacyPanel, project, iteration);
}

/** ε spent (Veil's differential-privacy extension) and the membership-inference audit of this iteration. */
async function renderPrivacy(panel, project, iteration) {
  fill(panel, h("h3", {}, "Privacy"), spinner("Loading the privacy report…"));
  let report;
  try {
    report = await get(veil`projects/${project.id}/iterations/${iteration.id}/privacy`);
  } catch (err) {
    fill(panel, h("h3", {}, "Privacy"), errorBox(err));
    return;
  }
  const dp = report.differentialPrivacy;
  const field = (label, value) => h("div", { class: "field" }, h("span", { class: "muted small" }, label), h("div", {}, value));
  const interval = (i) => `${i.value.toFixed(3)} [${i.low.toFixed(3)}, ${i.high.toFixed(3)}]`;
  const spent = dp
    ? h(
        "div",
        { class: "fields", id: "dp-spent" },
        field("Differential privacy", h("strong", {}, `ε = ${dp.epsilon.toFixed(2)}`)),
        field("δ", dp.delta.toExponential(1)),
        field("Accountant", dp.accountant.toUpperCase()),
        field("Clipping norm", String(dp.maxGradNorm)),
        field("Noise multiplier", dp.noiseMultiplier.toFixed(3)),
        field("Sampling rate", `${dp.sampleRate.toFixed(3)} · ${dp.steps} steps`),
      )
    : h(
        "p",
        { id: "dp-spent" },
        h("strong", {}, "Not differentially private (ε = ∞). "),
        h("span", { class: "muted" }, "Tick “Differential privacy” on the Training tab to bound what the model reveals about any one image."),
      );
  const audit = report.audit;
  const auditBody = audit
    ? [
        h("h4", {}, "Membership-inference audit"),
        h("p", { id: "audit-verdict" }, audit.verdict),
        h(
          "table",
          { class: "table", id: "audit-attacks" },
          h("thead", {}, h("tr", {}, ["Attack", "AUC [95 % CI]", "TPR @ 0.1 % FPR", "TPR @ 1 % FPR"].map((c) => h("th", {}, c)))),
          h(
            "tbody",
            {},
            audit.attacks.map((a) =>
              h(
                "tr",
                { title: a.description },
                h("td", {}, a.name),
                h("td", { class: "num" }, interval(a.auc)),
                h("td", { class: "num" }, interval(a.tprAt01Fpr)),
                h("td", { class: "num" }, interval(a.tprAt1Fpr)),
              ),
            ),
          ),
        ),
        h(
          "p",
          { class: "muted small" },
          `${audit.members} member and ${audit.nonMembers} held-out (non-member) pairs, ${audit.referenceModels} reference models, ` +
            `${audit.seconds.toFixed(1)} s. AUC 0.5 is guessing. With ${audit.nonMembers} held-out images the smallest measurable ` +
            `false-positive rate is ${percent(audit.minMeasurableFpr, 2)}.`,
        ),
        ...(audit.notes || []).map((note) => h("p", { class: "muted small audit-note" }, note)),
      ]
    : [h("p", { class: "muted" }, "No membership-inference audit for this iteration (trained with the audit turned off).")];
  fill(panel, h("h3", {}, "Privacy"), spent, ...auditBody);
}

function renderSummary(panel, project, iteration) {
  const field = (label, value) => h("div", { class: "field" }, h("span", { class: "muted small" }, label), h("div", {}, value));
  fill(
    panel,
    h(
      "div",
      { class: "row between" },
      h("h2", {}, iteration.name, " ", badge(iteration.status)),
      project.me.can("train") && iteration.status !== "Training"
        ? h("button", { class: "danger ghost small", onclick: () => deleteIteration(project, iteration) }, "Delete iteration")
        : null,
    ),
    h(
      "div",
      { class: "fields" },
      field("Training type", iteration.trainingType || "Regular"),
      field("Created", timeAgo(iteration.created)),
      field("Trained", timeAgo(iteration.trainedAt)),
      field("Published as", iteration.publishName ? h("code", {}, iteration.publishName) : "not published"),
    ),
    iteration.trainingErrorDetails ? errorBox({ message: iteration.trainingErrorDetails }) : null,
  );
}

function detectionBoxes(image, threshold) {
  const truth = (image.regions || []).map((r) => ({ ...r, title: `true: ${r.tagName}`, kind: "truth" }));
  const predicted = image.predictions
    .filter((p) => p.boundingBox && p.probability >= threshold)
    .map((p) => ({ ...p.boundingBox, title: `${p.tagName} ${percent(p.probability, 0)}`, kind: "predicted" }));
  return [...truth, ...predicted];
}

/** The ground truth of a held-out image: its tags, or for detection its number of boxes per tag. */
function truthText(image) {
  const regions = image.regions || [];
  if (regions.length) {
    const counts = new Map();
    for (const r of regions) counts.set(r.tagName, (counts.get(r.tagName) || 0) + 1);
    return [...counts].map(([name, n]) => `${n} ${name}`).join(", ");
  }
  return (image.tags || []).map((t) => t.tagName).join(", ") || "—";
}

async function deleteIteration(project, iteration) {
  const ok = await confirmDialog({
    title: `Delete ${iteration.name}?`,
    body: iteration.publishName
      ? `It is published as ${iteration.publishName}; unpublish it first.`
      : "Its model, metrics and exports are deleted. Training images stay.",
    confirmLabel: "Delete iteration",
  });
  if (!ok) return;
  try {
    await del(tr`projects/${project.id}/iterations/${iteration.id}`);
    toast(`Deleted ${iteration.name}.`, "ok");
    window.location.hash = `#/projects/${project.id}/train`;
  } catch (err) {
    toast(err.message, "error");
  }
}

function renderPerformance(panel, project, iteration, onThreshold) {
  const threshold = h("input", { type: "range", id: "threshold", min: 0, max: 1, step: 0.05, value: 0.5, "aria-label": "Probability threshold" });
  const thresholdValue = h("output", { for: "threshold" }, "50%");
  const overlap = project.isDetection
    ? h("input", { type: "range", id: "overlap", min: 0.1, max: 0.9, step: 0.05, value: 0.3, "aria-label": "Overlap (IoU) threshold" })
    : null;
  const overlapValue = overlap ? h("output", { for: "overlap" }, "30%") : null;
  const body = h("div", {}, spinner("Computing performance…"));
  let requestNo = 0;

  async function load() {
    thresholdValue.textContent = percent(Number(threshold.value), 0);
    if (overlap) overlapValue.textContent = percent(Number(overlap.value), 0);
    const mine = ++requestNo;
    onThreshold(Number(threshold.value));
    try {
      const perf = await get(tr`projects/${project.id}/iterations/${iteration.id}/performance`, {
        query: { threshold: threshold.value, overlapThreshold: overlap ? overlap.value : undefined },
      });
      if (mine === requestNo) fill(body, performanceTable(perf, project));
    } catch (err) {
      if (mine === requestNo) fill(body, errorBox(err));
    }
  }
  threshold.addEventListener("input", load);
  if (overlap) overlap.addEventListener("input", load);

  fill(
    panel,
    h("h2", {}, "Performance on held-out images"),
    h(
      "div",
      { class: "sliders" },
      h("label", { class: "slider" }, "Probability threshold ", threshold, thresholdValue),
      overlap ? h("label", { class: "slider" }, "Overlap threshold (IoU) ", overlap, overlapValue) : null,
    ),
    body,
  );
  load();
}

function performanceTable(perf, project) {
  const big = (label, value) => h("div", { class: "metric" }, h("strong", {}, percent(value)), h("span", {}, label));
  const tags = perf.perTagPerformance || [];
  const std = (v) => (v ? ` ± ${percent(v)}` : "");
  return h(
    "div",
    {},
    h(
      "div",
      { class: "metrics" },
      big("Precision", perf.precision),
      big("Recall", perf.recall),
      big(project.isDetection ? "mAP" : "AP", perf.averagePrecision),
    ),
    h(
      "table",
      { class: "table", id: "per-tag" },
      h("thead", {}, h("tr", {}, ["Tag", "Precision", "Recall", "Average precision"].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        tags.map((t) =>
          h(
            "tr",
            {},
            h("td", {}, t.name),
            h("td", { class: "num" }, percent(t.precision), h("span", { class: "muted small" }, std(t.precisionStdDeviation))),
            h("td", { class: "num" }, percent(t.recall), h("span", { class: "muted small" }, std(t.recallStdDeviation))),
            h("td", { class: "num" }, percent(t.averagePrecision)),
          ),
        ),
      ),
    ),
  );
}

async function renderPlots(panel, page, project, iteration) {
  fill(panel, h("h2", {}, "Curves"), spinner("Loading plots…"));
  let tagNames = [];
  try {
    const perf = await get(tr`projects/${project.id}/iterations/${iteration.id}/performance`);
    tagNames = (perf.perTagPerformance || []).map((t) => t.name);
  } catch (err) {
    fill(panel, h("h2", {}, "Curves"), errorBox(err));
    return;
  }
  const plots = plotUrls(project.id, iteration.id, tagNames, iteration.trainingType);
  const figures = await Promise.all(
    plots.map(async ({ title, path }) => {
      try {
        const url = await page.blobs.load(path);
        return h("figure", { class: "plot" }, h("img", { src: url, alt: title }), h("figcaption", {}, title));
      } catch (err) {
        return err.status === 404 ? null : h("figure", { class: "plot" }, errorBox(err), h("figcaption", {}, title));
      }
    }),
  );
  const shown = figures.filter(Boolean);
  if (!page.alive) return;
  fill(panel, h("h2", {}, "Curves"), shown.length ? h("div", { class: "plots" }, shown) : h("p", { class: "muted" }, "This iteration has no plots."));
}

/**
 * The held-out images the metrics come from, each with its true tags and what the model said; at the chosen
 * threshold a classification image is a mistake when the predicted tag set differs from the true one.
 */
function heldOutImages(panel, page, project, iteration) {
  const thumbnails = new ThumbnailLoader(page);
  page.onLeave(() => thumbnails.stop());
  const onlyMistakes = h("input", { type: "checkbox", id: "only-mistakes", onchange: () => draw() });
  const summary = h("span", { class: "muted small" });
  const grid = h("div", { class: "image-grid" }, spinner("Loading held-out images…"));
  let images = null;
  let threshold = 0.5;

  fill(
    panel,
    h("div", { class: "row between" }, h("h2", {}, "Held-out images"), summary),
    project.isDetection
      ? h("p", { class: "muted small" }, h("span", { class: "legend legend-truth" }), " labelled boxes · ", h("span", { class: "legend legend-predicted" }), " predicted at or above the threshold")
      : h("label", { class: "inline-field" }, onlyMistakes, " Only mistakes at this threshold"),
    grid,
  );

  get(tr`projects/${project.id}/iterations/${iteration.id}/performance/images`, { query: { take: 256 } })
    .then((list) => {
      images = list;
      draw();
    })
    .catch((err) => fill(grid, errorBox(err)));

  function verdict(image) {
    const above = image.predictions.filter((p) => p.probability >= threshold);
    if (project.isDetection) {
      return { mistake: false, said: `${above.length} box(es) ≥ ${percent(threshold, 0)}` };
    }
    const truth = new Set((image.tags || []).map((t) => t.tagName));
    const predicted = new Set(above.map((p) => p.tagName));
    const mistake = truth.size !== predicted.size || [...truth].some((t) => !predicted.has(t));
    const top = image.predictions.slice().sort((a, b) => b.probability - a.probability)[0];
    const said = above.length
      ? above.map((p) => `${p.tagName} ${percent(p.probability, 0)}`).join(", ")
      : top
        ? `nothing (top: ${top.tagName} ${percent(top.probability, 0)})`
        : "nothing";
    return { mistake, said };
  }

  let tiles = []; // built once (thumbnails load once); a threshold change only updates their captions
  let built = false;

  function build() {
    built = true;
    tiles = images.map((image) => {
      const img = h("img", { alt: "", decoding: "async" });
      const said = h("span");
      // Detection: the true boxes and the predicted ones above the threshold, drawn over the image.
      const boxes = project.isDetection ? boxFrame(img, image.width, image.height) : null;
      const tile = h(
        "figure",
        { class: "tile" },
        h("div", { class: "thumb" }, boxes ? boxes.frame : img),
        h(
          "figcaption",
          { class: "small" },
          h("div", {}, h("span", { class: "muted" }, "true: "), truthText(image)),
          h("div", {}, h("span", { class: "muted" }, "said: "), said),
        ),
      );
      if (project.me.can("images.bytes")) thumbnails.queue(img, image.thumbnailUri);
      else tile.querySelector(".thumb").classList.add("withheld");
      return { image, tile, said, boxes };
    });
    fill(grid, images.length ? tiles.map((t) => t.tile) : h("p", { class: "muted" }, "No held-out images recorded."));
  }

  function draw() {
    if (!images) return;
    if (!built) build();
    let mistakes = 0;
    for (const t of tiles) {
      const v = verdict(t.image);
      if (v.mistake) mistakes += 1;
      t.said.textContent = v.said;
      if (t.boxes) t.boxes.setBoxes(detectionBoxes(t.image, threshold));
      t.tile.classList.toggle("mistake", v.mistake);
      t.tile.hidden = onlyMistakes.checked && !v.mistake;
    }
    summary.textContent = project.isDetection ? `${images.length} image(s)` : `${images.length} image(s), ${mistakes} wrong at ${percent(threshold, 0)}`;
  }

  return {
    setThreshold(value) {
      threshold = value;
      draw();
    },
  };
}

function renderPublish(panel, project, iteration, reload) {
  const name = h("input", {
    name: "publishName",
    required: true,
    pattern: "[A-Za-z0-9_\\-.]+",
    value: iteration.publishName || defaultPublishName(iteration),
    "aria-label": "Published name",
  });
  async function publish(event) {
    event.preventDefault();
    try {
      await post(tr`projects/${project.id}/iterations/${iteration.id}/publish`, { query: { publishName: name.value.trim(), predictionId: "veil" } });
      toast(`Published as ${name.value.trim()}.`, "ok");
      await reload();
    } catch (err) {
      toast(err.message, "error");
    }
  }
  async function unpublish() {
    const ok = await confirmDialog({
      title: `Unpublish ${iteration.publishName}?`,
      body: "Prediction calls using this name will fail until an iteration is published under it again.",
      confirmLabel: "Unpublish",
    });
    if (!ok) return;
    try {
      await del(tr`projects/${project.id}/iterations/${iteration.id}/publish`);
      toast("Unpublished.", "ok");
      await reload();
    } catch (err) {
      toast(err.message, "error");
    }
  }
  const kind = project.isDetection ? "detect" : "classify";
  fill(
    panel,
    h("h2", {}, "Prediction endpoint"),
    iteration.publishName
      ? [
          h("p", {}, "Published. Call it with a prediction key (", h("code", {}, "nostore"), " keeps nothing):"),
          h("pre", { class: "code", id: "predict-example" }, predictExample(project, iteration, kind)),
          h(
            "div",
            { class: "row" },
            h("button", { class: "small", onclick: () => copyText(predictExample(project, iteration, kind)) }, "Copy"),
            h("button", { class: "danger ghost", onclick: unpublish }, "Unpublish"),
          ),
        ]
      : h(
          "form",
          { class: "row", onsubmit: publish },
          h("label", { class: "grow" }, "Name ", name),
          h("button", { type: "submit", class: "primary" }, "Publish"),
        ),
  );
}

function predictExample(project, iteration, kind) {
  const url = `${window.location.origin}/customvision/v3.0/prediction/${project.id}/${kind}/iterations/${iteration.publishName}/image/nostore`;
  return `curl -X POST "${url}" \\\n  -H "Prediction-Key: $PREDICTION_KEY" \\\n  -H "Content-Type: application/octet-stream" \\\n  --data-binary @photo.jpg`;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied.", "ok");
  } catch {
    toast("Copy failed: select the text and copy it by hand.", "error");
  }
}

function defaultPublishName(iteration) {
  return iteration.name.replace(/[^A-Za-z0-9_\-.]+/g, "");
}

// The formats the Export menu offers, by the API's platform/flavor names (docs/EXPORTS.md). A platform shows only
// when the iteration's `exportableTo` lists it (compact domains; what the converters build for its task); Veil's
// own ONNX bundle exports from every trained iteration.
const EXPORT_FORMATS = [
  { platform: "ONNX", flavor: null, label: "ONNX (Azure's layout)" },
  { platform: "ONNX", flavor: "OnnxFloat16", label: "ONNX float16" },
  { platform: "OpenVino", flavor: null, label: "OpenVINO IR" },
  { platform: "TensorFlow", flavor: "TensorFlowLite", label: "TensorFlow Lite" },
  { platform: "TensorFlow", flavor: "TensorFlowLiteInt8", label: "TensorFlow Lite int8" },
  { platform: "CoreML", flavor: null, label: "Core ML" },
  { platform: "DockerFile", flavor: "Linux", label: "Docker (Linux)" },
  { platform: "ONNX", flavor: "Veil", label: "Veil ONNX (veil predict, edge)" },
];

function exportFormats(iteration) {
  const platforms = new Set(iteration.exportableTo || []);
  return EXPORT_FORMATS.filter((f) => f.flavor === "Veil" || platforms.has(f.platform));
}

function formatLabel(x) {
  const known = EXPORT_FORMATS.find((f) => f.platform === x.platform && (f.flavor || null) === (x.flavor || null));
  return known ? known.label : [x.platform, x.flavor].filter(Boolean).join(" · ");
}

function renderExport(panel, page, project, iteration) {
  const list = h("div", { id: "export-list" }, spinner("Loading exports…"));
  let timer = null;
  page.onLeave(() => clearTimeout(timer));

  async function refresh() {
    clearTimeout(timer);
    let exports;
    try {
      exports = await get(tr`projects/${project.id}/iterations/${iteration.id}/export`);
    } catch (err) {
      fill(list, errorBox(err));
      return;
    }
    if (!page.alive) return;
    fill(list, exports.length ? exports.map((x) => exportRow(x)) : h("p", { class: "muted small" }, "Not exported yet."));
    if (exports.some((x) => x.status === "Exporting")) timer = setTimeout(refresh, EXPORT_POLL_MS);
  }

  function exportRow(x) {
    const row = h(
      "div",
      { class: "row between export-row", "data-platform": x.platform, "data-flavor": x.flavor || "" },
      h("span", {}, h("strong", {}, formatLabel(x)), " "),
      badge(x.status),
      x.status === "Done" && x.downloadUri ? h("button", { class: "primary small", onclick: () => download(x) }, "Download") : null,
      x.status === "Exporting" ? h("button", { class: "ghost small", onclick: () => cancel(x) }, "Cancel") : null,
    );
    if (x.status === "Exporting") return h("div", { class: "export-item" }, row, progressBar({ stage: x.stage || "waiting for a worker", percent: x.percent }));
    if (x.status === "Failed") return h("div", { class: "export-item" }, row, h("p", { class: "small error-text export-error" }, x.errorDetails || "failed"));
    return h("div", { class: "export-item" }, row);
  }

  async function download(x) {
    try {
      const response = await request("GET", x.downloadUri, { as: "response" });
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: filenameOf(response) || `${project.name}-${iteration.name}.zip` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async function cancel(x) {
    try {
      await post(veil`projects/${project.id}/exports/${x.id}/cancel`);
      await refresh();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  const formats = exportFormats(iteration);
  const select = h(
    "select",
    { id: "export-format", name: "format", "aria-label": "Export format" },
    formats.map((f, i) => h("option", { value: String(i) }, f.label)),
  );

  async function startExport() {
    const chosen = formats[Number(select.value)];
    const query = { platform: chosen.platform };
    if (chosen.flavor) query.flavor = chosen.flavor;
    try {
      await post(tr`projects/${project.id}/iterations/${iteration.id}/export`, { query });
      await refresh();
    } catch (err) {
      toast(err.message, "error");
    }
  }

  fill(
    panel,
    h("h2", {}, "Export"),
    h(
      "p",
      { class: "muted small" },
      iteration.exportable
        ? "Azure's export formats (compact domain) or Veil's own ONNX; "
        : "Azure's formats need a compact domain; Veil's own ONNX runs offline with ",
      iteration.exportable ? "the export runs in the background." : h("code", {}, "veil predict --model"),
    ),
    h("div", { class: "row" }, select, h("button", { onclick: startExport, id: "export-start" }, "Export")),
    list,
  );
  refresh();
}

function filenameOf(response) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = disposition.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
  return match ? decodeURIComponent(match[1]) : null;
}
