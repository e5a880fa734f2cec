// The Training tab: start training (Regular / Advanced), follow the job live, list iterations.
import { get, post, tr, veil } from "../api.js";
import { badge, confirmDialog, emptyState, errorBox, fill, h, percent, timeAgo, toast } from "../dom.js";
import { jobProgress, progressBar } from "../jobs.js";

const POLL_MS = 1500;

export async function render(el, page, project) {
  const trainPanel = h("div", { class: "card" });
  const livePanel = h("div", { id: "live-jobs" });
  const listPanel = h("div", { class: "card" });
  fill(el, project.me.can("train") ? trainPanel : null, livePanel, listPanel);
  renderTrainForm(trainPanel, project, () => refresh());

  let timer = null;
  page.onLeave(() => clearTimeout(timer));
  // A completed iteration's headline never changes: fetch it once, not on every progress poll.
  const headlines = new Map();
  let watching = new Set(); // iterations seen training, to announce when they finish

  async function refresh() {
    clearTimeout(timer);
    let iterations;
    try {
      iterations = await get(tr`projects/${project.id}/iterations`);
    } catch (err) {
      fill(listPanel, errorBox(err));
      return;
    }
    if (!page.alive) return;
    iterations.sort((a, b) => (b.created || "").localeCompare(a.created || ""));
    renderIterations(listPanel, project, iterations, headlines);
    const running = iterations.filter((it) => it.status === "Training" || it.status === "Queued");
    for (const it of iterations) {
      if (watching.has(it.id) && !running.includes(it)) {
        toast(`${it.name}: ${it.status === "Completed" ? "training finished" : `training ${it.status.toLowerCase()}`}.`, it.status === "Completed" ? "ok" : "error");
      }
    }
    watching = new Set(running.map((it) => it.id));
    await renderLive(livePanel, project, running, refresh);
    if (running.length && page.alive) timer = setTimeout(refresh, POLL_MS);
  }

  await refresh();
}

function renderTrainForm(panel, project, onStarted) {
  // Custom Vision reserves whole hours; 0 lets Veil pick its default (about ten minutes on CPU).
  const budget = h(
    "select",
    { name: "budget", "aria-label": "Training budget" },
    h("option", { value: 0 }, "Veil's default (about 10 minutes)"),
    [1, 2, 4, 8].map((hours) => h("option", { value: hours }, `up to ${hours} hour${hours > 1 ? "s" : ""}`)),
  );
  const budgetRow = h("label", { class: "inline-field", hidden: true }, "Time budget ", budget);
  // Veil extension: the backbone size (Lite2 classifies best; Lite0 is the fastest to train and serve).
  const backbone = h(
    "select",
    { name: "backbone", "aria-label": "Network" },
    // Detection's default is YOLOX-Nano; private detection (DP) keeps EfficientNet-Lite0 FCOS unless one is chosen.
    h("option", { value: "" }, project.isDetection ? "Veil's choice (YOLOX-Nano; private: EfficientNet-Lite0)" : "Veil's choice (EfficientNet-Lite2)"),
    h("option", { value: "efficientnet-lite0" }, "EfficientNet-Lite0: fastest"),
    h("option", { value: "efficientnet-lite1" }, "EfficientNet-Lite1"),
    h("option", { value: "efficientnet-lite2" }, "EfficientNet-Lite2: most accurate"),
    // Detection starts from the COCO-pretrained YOLOX-Nano shipped with Veil (issue 15: the measured default).
    project.isDetection ? h("option", { value: "yolox-nano" }, "YOLOX-Nano: starts from a COCO detector") : null,
  );
  const force = h("input", { type: "checkbox", name: "forceTrain" });
  // Veil extension: differential privacy (classification, and detection: FCOS by default, YOLOX-Nano's class rows):
  // DP-SGD whose ε bounds what the model can reveal about any one training image; δ is automatic (1/(10·N)).
  const private_ = h("input", { type: "checkbox", name: "privacy", id: "dp-toggle" });
  const epsilon = h("input", {
    type: "number", name: "epsilon", id: "dp-epsilon", min: "0.1", step: "0.1", value: "8",
    "aria-label": "Privacy budget epsilon", class: "narrow",
  });
  const epsilonRow = h("label", { class: "inline-field", hidden: true }, "ε (smaller = more private) ", epsilon);
  private_.onchange = () => { epsilonRow.hidden = !private_.checked; };
  const privacyRow = h("div", {},
    h("label", { class: "inline-field" }, private_, " Differential privacy: bound what the model reveals about any one image"),
    epsilonRow);
  const message = h("div");
  const submit = h("button", { type: "submit", class: "primary", id: "train-button" }, "Train");

  function onType(event) {
    budgetRow.hidden = event.target.value !== "Advanced";
  }

  async function onSubmit(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const trainingType = form.get("trainingType");
    submit.disabled = true;
    fill(message);
    try {
      const iteration = await post(tr`projects/${project.id}/train`, {
        query: {
          trainingType,
          reservedBudgetInHours: trainingType === "Advanced" ? Number(budget.value) : undefined,
          forceTrain: force.checked ? "true" : undefined,
          backbone: backbone.value || undefined,
          privacy: private_.checked ? "dp" : undefined,
          epsilon: private_.checked ? epsilon.value : undefined,
          delta: private_.checked ? "auto" : undefined,
        },
      });
      toast(`Training started: ${iteration.name}.`, "ok");
      await onStarted(iteration);
    } catch (err) {
      fill(message, errorBox(err));
    } finally {
      submit.disabled = false;
    }
  }

  const minimum = project.isDetection ? 15 : 5;
  // Which tags have enough images yet, so nobody waits for a refusal to find out.
  const readiness = h("ul", { class: "readiness", id: "readiness" });
  get(tr`projects/${project.id}/tags`)
    .then((tags) =>
      fill(
        readiness,
        tags.length
          ? tags.map((t) => {
              const count = t.imageCount ?? 0;
              const ok = count >= minimum;
              return h(
                "li",
                { class: ok ? "ready" : "short" },
                h("span", { "aria-hidden": "true" }, ok ? "✓" : "•"),
                ` ${t.name}: ${count} image(s)`,
                ok ? "" : `, ${minimum - count} more needed`,
              );
            })
          : h("li", { class: "short" }, "No tags yet: create tags and label images on the Images tab."),
      ),
    )
    .catch(() => readiness.remove());
  // A project that forgets its training images after each training says so before anyone trains it.
  const forgetting = h("p", { class: "notice small", id: "forget-notice", hidden: true },
    "This project's privacy policy shreds its training images once an iteration has trained on them: the iteration keeps its model and metrics, and training again needs new images.");
  get(veil`projects/${project.id}/privacy`)
    .then((policy) => { forgetting.hidden = !policy.forget_images_after_training; })
    .catch(() => forgetting.remove());
  fill(
    panel,
    h("h2", {}, "Train a model"),
    h(
      "p",
      { class: "muted" },
      `Each tag needs at least ${minimum} images. Metrics come only from images held out of training.`,
    ),
    readiness,
    forgetting,
    h(
      "form",
      { class: "train-form", onsubmit: onSubmit },
      h(
        "fieldset",
        { class: "choice-cards" },
        h("legend", {}, "Training type"),
        h(
          "label",
          { class: "choice" },
          h("input", { type: "radio", name: "trainingType", value: "Regular", checked: true, onchange: onType }),
          h("strong", {}, "Regular"),
          h("span", { class: "muted small" }, project.isDetection ? "A few minutes on CPU." : "Seconds: a classifier on frozen features."),
        ),
        h(
          "label",
          { class: "choice" },
          h("input", { type: "radio", name: "trainingType", value: "Advanced", onchange: onType }),
          h("strong", {}, "Advanced"),
          h("span", { class: "muted small" }, "Fine-tunes the whole network within a time budget."),
        ),
      ),
      budgetRow,
      h("label", { class: "inline-field" }, "Network ", backbone),
      privacyRow,
      h("label", { class: "inline-field" }, force, " Train even if nothing changed since the last iteration"),
      message,
      h("div", { class: "row end" }, submit),
    ),
  );
}

async function renderLive(panel, project, running, refresh) {
  if (!running.length) {
    fill(panel);
    return;
  }
  const cards = await Promise.all(
    running.map(async (iteration) => {
      const progress = await jobProgress(project.id, iteration.id).catch(() => null);
      return h(
        "div",
        { class: "card live", dataset: { iterationId: iteration.id } },
        h(
          "div",
          { class: "row between" },
          h("h3", {}, iteration.name, " ", badge(iteration.status)),
          project.me.can("train") && !(progress && progress.cancelRequested)
            ? h("button", { class: "danger ghost small", onclick: () => cancel(project, iteration, refresh) }, "Cancel")
            : progress && progress.cancelRequested
              ? h("span", { class: "muted small" }, "cancelling…")
              : null,
        ),
        progressBar(progress, iteration),
      );
    }),
  );
  fill(panel, cards);
}

function renderIterations(panel, project, iterations, headlines) {
  if (!iterations.length) {
    fill(panel, h("h2", {}, "Iterations"), emptyState("No iterations yet.", "Train once you have tagged enough images."));
    return;
  }
  fill(
    panel,
    h("h2", {}, "Iterations"),
    h(
      "table",
      { class: "table", id: "iterations" },
      h("thead", {}, h("tr", {}, ["Iteration", "Status", "Type", "Created", "Published as", "Precision", "Recall", ""].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        iterations.map((it) => {
          const precision = h("td", { class: "num" }, "…");
          const recall = h("td", { class: "num" }, "…");
          if (it.status === "Completed") fillHeadline(project.id, it.id, precision, recall, headlines);
          else {
            precision.textContent = "—";
            recall.textContent = "—";
          }
          return h(
            "tr",
            { dataset: { iterationId: it.id } },
            h("td", {}, h("a", { href: `#/projects/${project.id}/iterations/${it.id}` }, it.name)),
            h("td", {}, badge(it.status), it.trainingErrorDetails ? h("div", { class: "small error-text" }, it.trainingErrorDetails) : null),
            h("td", {}, it.trainingType || "Regular"),
            h("td", {}, timeAgo(it.created)),
            h("td", {}, it.publishName ? h("code", {}, it.publishName) : h("span", { class: "muted" }, "—")),
            precision,
            recall,
            h("td", {}, h("a", { class: "button small", href: `#/projects/${project.id}/iterations/${it.id}` }, "Details")),
          );
        }),
      ),
    ),
  );
}

async function fillHeadline(projectId, iterationId, precisionCell, recallCell, headlines) {
  try {
    if (!headlines.has(iterationId)) {
      headlines.set(iterationId, get(tr`projects/${projectId}/iterations/${iterationId}/performance`, { query: { threshold: 0.5 } }));
    }
    const perf = await headlines.get(iterationId);
    precisionCell.textContent = percent(perf.precision);
    recallCell.textContent = percent(perf.recall);
  } catch {
    headlines.delete(iterationId);
    precisionCell.textContent = "—";
    recallCell.textContent = "—";
  }
}

async function cancel(project, iteration, refresh) {
  const ok = await confirmDialog({
    title: `Cancel ${iteration.name}?`,
    body: "Training stops at its next checkpoint and the iteration is marked Failed (cancelled).",
    confirmLabel: "Cancel training",
  });
  if (!ok) return;
  try {
    await post(veil`projects/${project.id}/iterations/${iteration.id}/cancel`);
    toast(`Cancelling ${iteration.name}…`, "ok");
  } catch (err) {
    toast(err.message, "error");
  }
  await refresh();
}
