// The "Privacy & settings" tab: the project's privacy policy (Veil's own `/veil/v1/projects/{id}/privacy`)
// and its Custom Vision settings (name, description, domain, classification type).
import { get, patch, put, tr, veil } from "../api.js";
import { errorBox, fill, h, spinner, toast } from "../dom.js";
import { listDomains } from "../domains.js";

// [target, label, hint, selectable]. Plates and people need the policy to name a detector (a trained
// object-detection iteration with those tags, set through the API); without one the server refuses them.
const NEEDS_DETECTOR = "needs a detector: name a trained object-detection iteration in the policy (API)";
const TARGETS = [
  ["faces", "Faces", "CenterFace detector, built in", true],
  ["plates", "Licence plates", NEEDS_DETECTOR, false],
  ["people", "Whole people", NEEDS_DETECTOR, false],
];
const METHODS = [
  ["solid", "Solid fill — nothing of the face remains"],
  ["pixelate", "Pixelate"],
  ["blur", "Gaussian blur"],
  ["dp-pixelate", "DP-Pix — pixelation with differential-privacy noise"],
];

export async function render(el, page, project) {
  fill(el, h("div", { class: "card" }, spinner("Loading the privacy policy…")));
  let policy;
  try {
    policy = await get(veil`projects/${project.id}/privacy`);
  } catch (err) {
    fill(el, h("div", { class: "card" }, h("h2", {}, "Privacy policy"), errorBox(err)));
    return;
  }
  if (!page.alive) return;
  const editable = project.me.can("projects.write");
  const domains = await listDomains().catch(() => []);
  fill(el, policyForm(project, policy, editable), settingsForm(project, domains, editable));
}

function settingsForm(project, domains, editable) {
  const disabled = !editable;
  const type = project.isDetection ? "ObjectDetection" : "Classification";
  const name = h("input", { name: "name", required: true, maxlength: 200, value: project.name, disabled });
  const description = h("input", { name: "description", maxlength: 500, value: project.description || "", disabled });
  const domain = h(
    "select",
    { name: "domainId", disabled },
    domains.filter((d) => d.type === type).map((d) => h("option", { value: d.id, selected: d.id === project.settings.domainId }, d.name)),
  );
  const classification = project.isDetection
    ? null
    : h(
        "select",
        { name: "classificationType", disabled },
        ["Multiclass", "Multilabel"].map((v) => h("option", { value: v, selected: v === project.settings.classificationType }, v)),
      );
  const message = h("div");
  async function onSubmit(event) {
    event.preventDefault();
    fill(message);
    try {
      const settings = { domainId: domain.value, ...(classification ? { classificationType: classification.value } : {}) };
      await patch(tr`projects/${project.id}`, { json: { name: name.value.trim(), description: description.value.trim(), settings } });
      toast("Project settings saved.", "ok");
      window.dispatchEvent(new HashChangeEvent("hashchange")); // re-render the header with the new name
    } catch (err) {
      fill(message, errorBox(err));
    }
  }
  return h(
    "form",
    { class: "card form-grid", id: "project-settings", onsubmit: onSubmit },
    h("h2", {}, "Project"),
    h("label", {}, "Name", name),
    h("label", {}, "Description", description),
    h("label", {}, "Domain", domain),
    classification ? h("label", {}, "Tags per image", classification) : h("div"),
    message,
    editable ? h("div", { class: "row end" }, h("button", { type: "submit", class: "primary" }, "Save settings")) : null,
  );
}

function policyForm(project, policy, editable) {
  const disabled = !editable;
  const anonymize = h("input", { type: "checkbox", name: "anonymize_on_ingest", checked: policy.anonymize_on_ingest, disabled });
  // Targets of the policy's detector other than those listed are kept as they are when the form is saved.
  const detectorTargets = policy.targets.filter((t) => !TARGETS.some(([value]) => value === t));
  const detectorNote = policy.detector
    ? h("p", { class: "muted small" }, `Detector: iteration ${policy.detector.iteration_id} of project ${policy.detector.project_id}` +
        (detectorTargets.length ? `, also hiding ${detectorTargets.join(", ")}` : ""))
    : null;
  const targets = TARGETS.map(([value, label, hint, selectable]) =>
    h(
      "label",
      { class: "check" },
      h("input", {
        type: "checkbox",
        name: "targets",
        value,
        checked: policy.targets.includes(value),
        // An unavailable target stays clickable only to switch it off.
        disabled: disabled || (!selectable && !policy.detector && !policy.targets.includes(value)),
      }),
      ` ${label} `,
      h("span", { class: "muted small" }, `(${hint})`),
    ),
  );
  const method = h(
    "select",
    { name: "method", disabled, onchange: () => syncMethod() },
    METHODS.map(([value, label]) => h("option", { value, selected: policy.method === value }, label)),
  );
  const epsilon = h("input", { type: "number", name: "epsilon", min: 0.01, step: 0.01, value: policy.epsilon, disabled });
  const cell = h("input", { type: "number", name: "cell", min: 1, step: 1, value: policy.cell, disabled });
  const m = h("input", { type: "number", name: "m", min: 1, step: 1, value: policy.m, disabled });
  const dpFields = h(
    "div",
    { class: "dp-fields" },
    h("label", {}, "ε (privacy budget; smaller is more private) ", epsilon),
    h("label", {}, "Cell size b (pixels) ", cell),
    h("label", {}, "m (pixels that may differ) ", m),
    h("p", { class: "muted small" }, "Each b×b cell is averaged, then Laplace noise of scale 255·m/(b²·ε) is added (Fan, 2018). ε is recorded on every image."),
  );
  const retention = h("input", { type: "number", name: "retention_days", min: 0, step: 1, value: policy.retention_days, disabled });
  const storePredictions = h("input", { type: "checkbox", name: "store_predictions", checked: policy.store_predictions, disabled });
  const forgetImages = h("input", { type: "checkbox", name: "forget_images_after_training", checked: policy.forget_images_after_training, disabled });
  const imageRetention = h("input", { type: "number", name: "training_image_retention_days", min: 1, step: 1, value: policy.training_image_retention_days ?? "", placeholder: "forever", disabled });
  const message = h("div");
  const submit = h("button", { type: "submit", class: "primary", id: "save-policy" }, "Save policy");

  function syncMethod() {
    dpFields.hidden = method.value !== "dp-pixelate";
  }
  syncMethod();

  async function onSubmit(event) {
    event.preventDefault();
    fill(message);
    const chosen = [...event.target.querySelectorAll("input[name=targets]:checked")].map((i) => i.value);
    const body = {
      anonymize_on_ingest: anonymize.checked,
      targets: [...chosen, ...detectorTargets],
      detector: policy.detector ?? null,
      method: method.value,
      keep_icc_profile: policy.keep_icc_profile ?? true, // no control here yet: keep what the API set
      retention_days: Number(retention.value),
      store_predictions: storePredictions.checked,
      forget_images_after_training: forgetImages.checked,
      training_image_retention_days: imageRetention.value ? Number(imageRetention.value) : null,
      epsilon: Number(epsilon.value),
      cell: Number(cell.value),
      m: Number(m.value),
    };
    if (body.anonymize_on_ingest && !body.targets.length) {
      fill(message, errorBox({ message: "Choose at least one thing to hide, or turn anonymization off." }));
      return;
    }
    submit.disabled = true;
    try {
      await put(veil`projects/${project.id}/privacy`, { json: body });
      toast("Privacy policy saved.", "ok");
    } catch (err) {
      fill(message, errorBox(err));
    } finally {
      submit.disabled = false;
    }
  }

  return h(
    "form",
    { class: "card policy", id: "privacy-policy", onsubmit: onSubmit },
    h("h2", {}, "Privacy policy"),
    editable ? null : h("p", { class: "muted small" }, "Read only: this key's role may not change project settings."),
    h(
      "fieldset",
      {},
      h("legend", {}, h("strong", {}, "On ingest")),
      h("label", { class: "check" }, anonymize, " Anonymize every uploaded image before it is encrypted and stored (the original is never written)"),
      h("div", { class: "indent" }, h("p", { class: "muted small" }, "Hide:"), targets, detectorNote, h("label", {}, "Method ", method), dpFields),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, h("strong", {}, "Predictions")),
      h("label", { class: "check" }, storePredictions, " Allow prediction images and results to be stored when a caller asks"),
      h("label", {}, "Keep stored prediction images for ", retention, " days (0: purge at the next run)"),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, h("strong", {}, "Training images")),
      h("label", { class: "check" }, forgetImages, " Shred the training images once an iteration has trained on them (the iteration keeps its model and metrics; retraining needs new images)"),
      h("label", {}, "Shred training images ", imageRetention, " days after upload (empty: keep until deleted)"),
    ),
    h("p", { class: "muted small" }, "Changes apply to images received from now on; images already stored are not altered."),
    message,
    editable ? h("div", { class: "row end" }, submit) : null,
  );
}
