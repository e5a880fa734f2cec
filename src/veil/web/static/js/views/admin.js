// Administration: API keys (admin) and the hash-chained audit log (admin, auditor) — Veil's `/veil/v1` routes.
import { del, get, post, session, tr, veil } from "../api.js";
import { badge, confirmDialog, emptyState, errorBox, fill, h, spinner, timeAgo, toast } from "../dom.js";
import { learnRole } from "../identity.js";

const ROLES = [
  ["admin", "everything, including keys"],
  ["trainer", "projects, tags, images, training, publishing, export"],
  ["labeler", "images, tags and regions only"],
  ["predictor", "the prediction API only"],
  ["auditor", "metadata and the audit log; never image bytes or models"],
];
const AUDIT_PAGE = 100;

export async function render(el, page, section) {
  const heading = section === "keys" ? "API keys" : "Audit log";
  const body = h("div", {}, spinner());
  const lead =
    section === "keys"
      ? "Keys are shown once when created; Veil keeps only their hashes."
      : "Every state change and every read of image bytes or models, in an append-only hash chain.";
  fill(el, h("div", { class: "page-head" }, h("div", {}, h("h1", {}, heading), h("p", { class: "muted" }, lead))), body);
  // Project names make ids readable; a role that cannot list projects still sees the ids.
  const projects = await get(tr`projects`).catch(() => []);
  const names = new Map(projects.map((p) => [p.id, p.name]));
  if (!page.alive) return;
  if (section === "keys") await renderKeys(body, page, projects);
  else await renderAudit(body, page, names);
}

// --- keys -------------------------------------------------------------------------------------------------

async function renderKeys(el, page, projects) {
  const created = h("div", { id: "new-key" });
  const table = h("div", { class: "card" }, spinner("Loading keys…"));
  fill(el, keyForm(projects, created, () => reload()), created, table);

  async function reload() {
    let keys;
    try {
      keys = await get(veil`keys`);
    } catch (err) {
      fill(table, errorBox(err));
      return;
    }
    if (!page.alive) return;
    // Only an admin may list keys, and the one whose prefix starts the session key is this one.
    const mine = keys.find((k) => (session.key || "").startsWith(k.prefix));
    await learnRole("admin", mine && mine.name);
    keys.sort((a, b) => (b.created || "").localeCompare(a.created || ""));
    const projectName = (id) => (id ? (projects.find((p) => p.id === id) || {}).name || id : "all projects");
    fill(
      table,
      h("h2", {}, "Keys"),
      keys.length
        ? h(
            "table",
            { class: "table", id: "keys" },
            h("thead", {}, h("tr", {}, ["Key", "Name", "Role", "Scope", "Created", "Expires", "State", ""].map((c) => h("th", {}, c)))),
            h(
              "tbody",
              {},
              keys.map((k) => {
                const expired = k.expiresAt && new Date(k.expiresAt) < new Date();
                const state = k.revokedAt ? badge("Revoked", "bad") : expired ? badge("Expired", "muted") : badge("Active", "ok");
                return h(
                  "tr",
                  { dataset: { keyId: k.id } },
                  h("td", {}, h("code", {}, `${k.prefix}…`), (session.key || "").startsWith(k.prefix) ? h("span", { class: "chip" }, "this key") : null),
                  h("td", {}, k.name || h("span", { class: "muted" }, "—")),
                  h("td", {}, k.role),
                  h("td", {}, projectName(k.projectId)),
                  h("td", {}, timeAgo(k.created)),
                  h("td", {}, k.expiresAt ? timeAgo(k.expiresAt) : h("span", { class: "muted" }, "never")),
                  h("td", {}, state),
                  h("td", {}, k.revokedAt ? null : h("button", { class: "danger ghost small", onclick: () => revoke(k) }, "Revoke")),
                );
              }),
            ),
          )
        : emptyState("No keys."),
    );
  }

  async function revoke(key) {
    const ok = await confirmDialog({
      title: `Revoke key ${key.prefix}…?`,
      body: "Every program using it gets 401 from now on. If it is the key you are signed in with, you are signed out.",
      confirmLabel: "Revoke key",
    });
    if (!ok) return;
    try {
      await del(veil`keys/${key.id}`);
      toast(`Revoked ${key.prefix}….`, "ok");
    } catch (err) {
      toast(err.message, "error");
    }
    await reload();
  }

  await reload();
}

function keyForm(projects, createdSlot, onCreated) {
  const role = h("select", { name: "role" }, ROLES.map(([value, what]) => h("option", { value, selected: value === "trainer" }, `${value} — ${what}`)));
  const scope = h("select", { name: "projectId" }, h("option", { value: "" }, "All projects"), projects.map((p) => h("option", { value: p.id }, p.name)));
  const expires = h("input", { type: "number", name: "expiresInDays", min: 1, step: 1, placeholder: "never" });
  const name = h("input", { name: "name", maxlength: 200, placeholder: "e.g. labelling team laptop" });
  const message = h("div");
  async function onSubmit(event) {
    event.preventDefault();
    fill(message);
    try {
      const key = await post(veil`keys`, {
        json: {
          role: role.value,
          projectId: scope.value || null,
          expiresInDays: expires.value ? Number(expires.value) : null,
          name: name.value.trim(),
        },
      });
      showSecret(createdSlot, key);
      event.target.reset();
      await onCreated();
    } catch (err) {
      fill(message, errorBox(err));
    }
  }
  return h(
    "form",
    { class: "card form-grid", id: "create-key", onsubmit: onSubmit },
    h("h2", {}, "Create a key"),
    h("label", {}, "Role", role),
    h("label", {}, "Scope", scope),
    h("label", {}, "Name", name),
    h("label", {}, "Expires after (days)", expires),
    message,
    h("div", { class: "row end" }, h("button", { type: "submit", class: "primary" }, "Create key")),
  );
}

function showSecret(slot, key) {
  const code = h("code", { id: "new-key-secret" }, key.key);
  const copy = h("button", { class: "small", onclick: async () => {
    try {
      await navigator.clipboard.writeText(key.key);
      toast("Copied.", "ok");
    } catch {
      toast("Copy failed: select the key and copy it by hand.", "error");
    }
  } }, "Copy");
  fill(
    slot,
    h(
      "div",
      { class: "card" },
      h("h2", {}, `New ${key.role} key`),
      h("p", {}, "Copy it now: it is shown only once and Veil keeps only its hash."),
      h("div", { class: "secret" }, code, copy),
      h("button", { class: "ghost small", onclick: () => fill(slot) }, "I have stored it — hide"),
    ),
  );
}

// --- audit ------------------------------------------------------------------------------------------------

async function renderAudit(el, page, names) {
  const chain = h("div", { class: "card", id: "audit-chain" }, spinner("Verifying the hash chain…"));
  const filter = h("input", { type: "search", placeholder: "Filter by action, role, key or id", "aria-label": "Filter events", oninput: () => draw() });
  const tableSlot = h("div");
  const more = h("button", { onclick: () => loadOlder() }, "Show older events");
  const exportButton = h("button", { id: "audit-export", onclick: () => exportAll(exportButton) }, "Download all (JSON Lines)");
  fill(
    el,
    chain,
    h("div", { class: "card" }, h("div", { class: "filters row between" }, filter, exportButton), tableSlot, h("div", { class: "row" }, more)),
  );

  let events = [];
  let total = 0;

  try {
    const report = await get(veil`audit/verify`);
    total = report.events;
    fill(
      chain,
      h(
        "div",
        { class: "row between" },
        h("div", {}, h("h2", {}, "Hash chain"), h("p", { class: "muted small" }, `${report.events} event(s). `, report.reason || "")),
        report.ok ? badge("Intact", "ok") : badge(`Broken at #${report.brokenAt}`, "bad"),
      ),
    );
  } catch (err) {
    fill(chain, errorBox(err));
    if (err.status === 401 || err.status === 403) {
      fill(tableSlot);
      more.remove();
      return;
    }
  }

  async function fetchPage(afterSeq) {
    return get(veil`audit`, { query: { afterSeq, limit: AUDIT_PAGE } });
  }

  async function loadOlder() {
    const oldest = events.length ? Math.min(...events.map((e) => e.seq)) : total + 1;
    const after = Math.max(0, oldest - 1 - AUDIT_PAGE);
    try {
      const older = (await fetchPage(after)).filter((e) => e.seq < oldest);
      events = events.concat(older);
      draw();
    } catch (err) {
      fill(tableSlot, errorBox(err));
    }
  }

  function draw() {
    const needle = filter.value.trim().toLowerCase();
    const shown = events
      .filter((e) => !needle || searchable(e, names).some((v) => v && String(v).toLowerCase().includes(needle)))
      .sort((a, b) => b.seq - a.seq);
    more.hidden = !events.length || Math.min(...events.map((e) => e.seq)) <= 1;
    if (!shown.length) {
      fill(tableSlot, emptyState(events.length ? "No event matches." : "No events."));
      return;
    }
    fill(
      tableSlot,
      h(
        "table",
        { class: "table", id: "audit" },
        h("thead", {}, h("tr", {}, ["#", "When", "Who", "Action", "Resources", "Outcome"].map((c) => h("th", {}, c)))),
        h(
          "tbody",
          {},
          shown.map((e) =>
            h(
              "tr",
              {},
              h("td", { class: "num" }, String(e.seq)),
              h("td", {}, timeAgo(e.at)),
              h("td", {}, e.role || "—", e.keyId ? h("div", { class: "muted small" }, h("code", {}, e.keyId.slice(0, 8))) : null),
              h("td", {}, h("code", {}, e.action)),
              h("td", { class: "small" }, resourceList(e.resourceIds, names)),
              h("td", {}, badge(e.outcome, e.outcome === "ok" ? "ok" : e.outcome === "denied" ? "bad" : "muted")),
            ),
          ),
        ),
      ),
    );
  }

  await loadOlder();
}

/**
 * Save the whole log as JSON Lines (one event per line, with its hash) so it can be archived or checked
 * elsewhere; paged from the server, assembled in memory, never stored by the portal.
 */
async function exportAll(button) {
  button.disabled = true;
  const lines = [];
  try {
    let after = 0;
    for (;;) {
      const page = await get(veil`audit`, { query: { afterSeq: after, limit: 1000 } });
      page.forEach((e) => lines.push(JSON.stringify(e)));
      if (page.length < 1000) break;
      after = page[page.length - 1].seq;
      button.textContent = `Downloading… ${lines.length}`;
    }
    const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "application/x-ndjson" }));
    const link = h("a", { href: url, download: `veil-audit-${new Date().toISOString().slice(0, 10)}.jsonl` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    toast(`Saved ${lines.length} audit event(s).`, "ok");
  } catch (err) {
    toast(err.message, "error");
  } finally {
    button.disabled = false;
    button.textContent = "Download all (JSON Lines)";
  }
}

/** The texts of an event a filter matches against (ids, and project names for ids that are projects). */
function searchable(event, names) {
  return [event.action, event.role, event.keyId, event.outcome, ...event.resourceIds, ...event.resourceIds.map((id) => names.get(id))];
}

/** Ids in an event, project names where known; long lists (a batch upload) are cut with a count. */
function resourceList(ids, names) {
  const shown = ids.slice(0, 3).map((id) => h("div", { title: id }, names.get(id) || h("code", {}, id.slice(0, 8))));
  if (ids.length > 3) shown.push(h("div", { class: "muted", title: ids.slice(3).join("\n") }, `and ${ids.length - 3} more`));
  return shown;
}
