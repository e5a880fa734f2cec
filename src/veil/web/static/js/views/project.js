// A project's page: header, tabs, and the tab's content.
import { get, tr } from "../api.js";
import { errorBox, fill, h, spinner } from "../dom.js";
import { isDetectionProject } from "../domains.js";
import { whoAmI } from "../identity.js";
import * as images from "./images.js";
import * as predictions from "./predictions.js";
import * as privacy from "./privacy.js";
import * as quicktest from "./quicktest.js";
import * as training from "./training.js";

// [route, label, module, the permission needed to see the tab]
const TABS = [
  ["images", "Images", images, "images.read"],
  ["train", "Training", training, "iterations.read"],
  ["test", "Quick test", quicktest, "train"],
  ["predictions", "Predictions", predictions, "predictions.read"],
  ["privacy", "Privacy & settings", privacy, "projects.read"],
];

/** Load the project and its type once; shared by the project tabs and the iteration page. */
export async function loadProject(projectId) {
  const project = await get(tr`projects/${projectId}`);
  project.isDetection = await isDetectionProject(project);
  project.me = await whoAmI();
  return project;
}

export function projectHeader(project, active) {
  const kind = project.isDetection ? "Object detection" : `Classification · ${project.settings.classificationType || "Multiclass"}`;
  return [
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/projects" }, "Projects"), " / ", h("span", {}, project.name)),
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, project.name), h("p", { class: "muted" }, kind, project.description ? ` — ${project.description}` : "")),
    ),
    h(
      "div",
      { class: "tabs", role: "tablist" },
      TABS.filter((tab) => project.me.can(tab[3])).map(([id, label]) =>
        h(
          "a",
          { href: `#/projects/${project.id}/${id}`, role: "tab", class: id === active ? "active" : null, "aria-selected": String(id === active) },
          label,
        ),
      ),
    ),
  ];
}

export async function render(el, page, projectId, tab) {
  fill(el, spinner("Loading project…"));
  let project;
  try {
    project = await loadProject(projectId);
  } catch (err) {
    fill(el, errorBox(err), h("p", {}, h("a", { href: "#/projects" }, "Back to projects")));
    return;
  }
  if (!page.alive) return;
  document.title = `${project.name} · Veil`;
  const body = h("section", { class: "tab-body" });
  fill(el, projectHeader(project, tab), body);
  const module = TABS.find(([id]) => id === tab)[2];
  await module.render(body, page, project);
}
