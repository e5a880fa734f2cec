// The projects list: counts per project, create, delete.
import { del, get, post, tr } from "../api.js";
import { confirmDialog, emptyState, errorBox, fill, h, spinner, timeAgo, toast } from "../dom.js";
import { domainsById, listDomains } from "../domains.js";
import { whoAmI } from "../identity.js";

export async function render(el, page) {
  const me = await whoAmI();
  const list = h("div", { class: "project-list" }, spinner("Loading projects…"));
  const formSlot = h("div");
  fill(
    el,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Projects"), h("p", { class: "muted" }, "Each project has its own encryption key, tags, images and models.")),
      me.can("projects.create") ? h("button", { class: "primary", id: "new-project", onclick: () => toggleForm() }, "New project") : null,
    ),
    formSlot,
    list,
  );

  let domains = [];
  try {
    domains = await listDomains();
  } catch (err) {
    fill(list, errorBox(err));
    return;
  }

  function toggleForm() {
    if (formSlot.firstChild) {
      fill(formSlot);
      return;
    }
    // A new project opens straight away: the next thing anyone does is add tags and images.
    fill(formSlot, createForm(domains, (project) => {
      window.location.hash = `#/projects/${project.id}/images`;
    }));
    formSlot.querySelector("input").focus();
  }

  async function refresh() {
    let projects;
    try {
      projects = await get(tr`projects`);
    } catch (err) {
      fill(list, errorBox(err));
      return;
    }
    if (!page.alive) return;
    if (!projects.length) {
      fill(list, emptyState("No projects yet.", "Create one to start collecting and labelling images."));
      return;
    }
    projects.sort((a, b) => (b.created || "").localeCompare(a.created || ""));
    const byId = domainsById(domains);
    fill(list, projects.map((p) => projectCard(p, byId, refresh, me)));
  }

  await refresh();
}

function projectCard(project, domainById, refresh, me) {
  const domain = domainById.get(project.settings && project.settings.domainId);
  const kind = domain && domain.type === "ObjectDetection" ? "Object detection" : "Classification";
  const flavour = domain && domain.type === "ObjectDetection" ? null : project.settings && project.settings.classificationType;
  const counts = h("div", { class: "counts" }, h("span", { class: "muted small" }, "counting…"));
  const card = h(
    "article",
    { class: "card project-card", dataset: { projectId: project.id } },
    h(
      "div",
      { class: "project-card-main" },
      h("a", { class: "project-name", href: `#/projects/${project.id}` }, project.name),
      h(
        "div",
        { class: "chips" },
        h("span", { class: "chip" }, kind),
        flavour ? h("span", { class: "chip" }, flavour) : null,
        domain ? h("span", { class: "chip chip-quiet" }, domain.name) : null,
      ),
      project.description ? h("p", { class: "muted" }, project.description) : null,
      h("p", { class: "small muted" }, "Created ", timeAgo(project.created)),
    ),
    counts,
    h(
      "div",
      { class: "project-card-actions" },
      h("a", { class: "button", href: `#/projects/${project.id}` }, "Open"),
      me.can("projects.write") ? h("button", { class: "danger ghost", onclick: () => removeProject(project, refresh) }, "Delete") : null,
    ),
  );
  loadCounts(project.id, counts, me);
  return card;
}

async function loadCounts(projectId, slot, me) {
  const stat = (value, label) => h("div", { class: "stat" }, h("strong", {}, String(value)), h("span", {}, label));
  // Each count stands alone: a role that may not read iterations still sees its image and tag counts.
  const optional = (promise) => promise.catch(() => null);
  const [images, tagged, tags, iterations] = await Promise.all([
    optional(get(tr`projects/${projectId}/images/count`)),
    optional(get(tr`projects/${projectId}/images/count`, { query: { taggingStatus: "Tagged" } })),
    optional(get(tr`projects/${projectId}/tags`)),
    me.can("iterations.read") ? optional(get(tr`projects/${projectId}/iterations`)) : null,
  ]);
  fill(
    slot,
    images !== null ? stat(images, "images") : null,
    tagged !== null ? stat(tagged, "tagged") : null,
    tags !== null ? stat(tags.length, "tags") : null,
    iterations !== null ? stat(iterations.length, "iterations") : null,
  );
}

async function removeProject(project, refresh) {
  const ok = await confirmDialog({
    title: `Delete “${project.name}”?`,
    body:
      "Its encryption key is destroyed first, so its images, models and stored predictions become unreadable " +
      "everywhere, including in backups. This cannot be undone.",
    confirmLabel: "Delete project",
  });
  if (!ok) return;
  try {
    await del(tr`projects/${project.id}`);
    toast(`Deleted project “${project.name}”.`, "ok");
  } catch (err) {
    toast(err.message, "error");
  }
  await refresh();
}

function createForm(domains, onCreated) {
  const name = h("input", { name: "name", required: true, maxlength: 200, placeholder: "e.g. Shelf inspection" });
  const description = h("input", { name: "description", maxlength: 500, placeholder: "Optional" });
  const typeSelect = h(
    "select",
    { name: "projectType", onchange: () => syncDomains() },
    h("option", { value: "Classification" }, "Classification — one or more tags per image"),
    h("option", { value: "ObjectDetection" }, "Object detection — boxes around objects"),
  );
  const domainSelect = h("select", { name: "domainId" });
  const classification = h(
    "fieldset",
    { class: "inline" },
    h("legend", {}, "Tags per image"),
    h("label", {}, h("input", { type: "radio", name: "classificationType", value: "Multiclass", checked: true }), " One (multiclass)"),
    h("label", {}, h("input", { type: "radio", name: "classificationType", value: "Multilabel" }), " Several (multilabel)"),
  );
  const message = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Create project");

  function syncDomains() {
    const type = typeSelect.value;
    fill(
      domainSelect,
      domains
        .filter((d) => d.type === type && d.enabled !== false)
        .map((d) => h("option", { value: d.id }, d.exportable ? `${d.name} — exportable` : d.name)),
    );
    classification.hidden = type !== "Classification";
  }
  syncDomains();

  async function onSubmit(event) {
    event.preventDefault();
    submit.disabled = true;
    fill(message);
    const form = new FormData(event.target);
    try {
      const project = await post(tr`projects`, {
        query: {
          name: name.value.trim(),
          description: description.value.trim(),
          domainId: domainSelect.value,
          classificationType: typeSelect.value === "Classification" ? form.get("classificationType") : undefined,
        },
      });
      toast(`Created project “${project.name}”.`, "ok");
      await onCreated(project);
    } catch (err) {
      fill(message, errorBox(err));
    } finally {
      submit.disabled = false;
    }
  }

  return h(
    "form",
    { class: "card form-grid", id: "create-project", onsubmit: onSubmit },
    h("h2", {}, "New project"),
    h("label", {}, "Name", name),
    h("label", {}, "Description", description),
    h("label", {}, "Project type", typeSelect),
    h("label", {}, "Domain", domainSelect),
    classification,
    message,
    h("div", { class: "row end" }, submit),
  );
}
