// The portal shell: a hash router, the top bar, and the sign-in gate.
import { BlobPool, onForbidden, onUnauthorized, session } from "./api.js";
import { errorBox, fill, h, toast } from "./dom.js";
import { learnRoleFrom, whoAmI } from "./identity.js";
import * as admin from "./views/admin.js";
import * as anonymize from "./views/anonymize.js";
import * as iteration from "./views/iteration.js";
import * as project from "./views/project.js";
import * as projects from "./views/projects.js";
import * as signin from "./views/signin.js";

const ROUTES = [
  [/^#?\/?$/, projects.render],
  [/^#\/projects$/, projects.render],
  [/^#\/projects\/([^/]+)$/, (el, page, id) => project.render(el, page, id, "images")],
  [/^#\/projects\/([^/]+)\/(images|train|test|predictions|privacy)$/, project.render],
  [/^#\/projects\/([^/]+)\/iterations\/([^/]+)$/, iteration.render],
  [/^#\/admin\/(keys|audit)$/, admin.render],
  [/^#\/anonymize$/, anonymize.render],
];

let current = null; // the page being shown: its cleanup hooks and blob URLs

/** Per-page context handed to every view: things to undo when the user leaves. */
function newPage() {
  const leaveHooks = [];
  return {
    blobs: new BlobPool(),
    alive: true,
    onLeave(fn) {
      leaveHooks.push(fn);
    },
    leave() {
      this.alive = false;
      leaveHooks.forEach((fn) => fn());
      this.blobs.releaseAll();
    },
  };
}

async function renderNav() {
  const nav = document.getElementById("nav");
  const account = document.getElementById("account");
  if (!session.key) {
    fill(nav);
    fill(account);
    return;
  }
  const me = await whoAmI();
  const hash = window.location.hash || "#/projects";
  const link = (href, label) =>
    h("a", { href, class: hash.startsWith(href) ? "active" : null, "aria-current": hash.startsWith(href) ? "page" : null }, label);
  fill(
    nav,
    link("#/projects", "Projects"),
    me.can("predict") ? link("#/anonymize", "Anonymize") : null,
    me.isAdmin ? link("#/admin/keys", "Keys") : null,
    me.canAudit ? link("#/admin/audit", "Audit log") : null,
  );
  fill(
    account,
    h("span", { class: "muted small", title: "The key is kept in this tab's session storage only" }, me.label),
    h("button", { class: "ghost small", onclick: signOut }, "Sign out"),
  );
}

function signOut() {
  session.key = null;
  whoAmI.forget();
  window.location.hash = "#/projects";
  route();
}

async function route() {
  if (current) current.leave();
  const view = document.getElementById("view");
  const page = newPage();
  current = page;
  const container = h("div", { class: "page" });
  fill(view, container);

  if (!session.key) {
    renderNav();
    await signin.render(container, page, () => {
      route();
    });
    return;
  }
  renderNav();
  document.title = "Veil portal";
  const hash = window.location.hash || "#/projects";
  for (const [pattern, render] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      try {
        await render(container, page, ...match.slice(1));
      } catch (err) {
        // A view that failed half-way still leaves the page usable and says why.
        if (page.alive) fill(container, errorBox(err), h("p", {}, h("a", { href: "#/projects" }, "Back to projects")));
      }
      return;
    }
  }
  fill(container, h("div", { class: "empty" }, h("strong", {}, "No such page."), " ", h("a", { href: "#/projects" }, "Back to projects")));
}

onUnauthorized((error) => {
  if (!session.key) return;
  session.key = null;
  whoAmI.forget();
  toast(`Signed out: ${error.message}`, "error");
  route();
});

window.addEventListener("veil:identity", () => renderNav());

onForbidden(async (error) => {
  // Once the role is known, draw the page again without the controls that role cannot use.
  if (await learnRoleFrom(error)) route();
});

window.addEventListener("hashchange", () => {
  // Start the new page at its top, with keyboard and screen-reader focus on it, as a full page load would.
  window.scrollTo(0, 0);
  document.getElementById("view").focus({ preventScroll: true });
  route();
});
route();
