// Uploading images: drag-and-drop or a file picker, optional tags for the whole upload, small multipart
// batches to Custom Vision's image route, a status per file with the server's reason for each refusal.
import { ApiError, request, tr } from "../api.js";
import { fill, h, toast } from "../dom.js";
import { progressBar } from "../jobs.js";

// Custom Vision accepts up to 64 images per call; smaller batches give quicker per-image feedback.
const UPLOAD_BATCH = 8;
const UPLOAD_BATCH_BYTES = 24 * 1024 * 1024;

// What each per-image upload status means, in words a user can act on.
const STATUS_TEXT = {
  OK: "Uploaded",
  OKDuplicate: "Already in this project (the same file): not stored twice",
  ErrorSource: "Could not read the file",
  ErrorImageFormat: "Not a supported image (JPEG, PNG, BMP, GIF, WebP, TIFF)",
  ErrorImageSize: "Too large (at most 6 MB per image)",
  ErrorImageDimensions: "Sides must be between 16 and 10,240 pixels",
  ErrorImageTooManyPixels: "Too many pixels",
  ErrorStorage: "The server could not store it",
  ErrorLimitExceed: "The project's image limit is reached",
  ErrorTagLimitExceed: "Too many tags on one image",
  ErrorInvalidTag: "A chosen tag does not exist any more",
  ErrorNegativeAndRegularTagOnSameImage: "A Negative tag cannot go with other tags",
  ErrorUnknown: "Refused by the server",
};

/** The upload card of a project's Images tab; `onUploaded` runs after each upload (to refresh the grid). */
export class Uploader {
  constructor(project, onUploaded) {
    this.project = project;
    this.onUploaded = onUploaded;
    this.tags = [];
    this.chosenTags = new Set(); // tag ids applied to every image of the next upload
    this.panel = h("div", { class: "card upload" });
    // Outlives re-renders of the panel (tags change after every upload), so results stay visible.
    this.statusList = h("ul", { class: "upload-status", id: "upload-status", "aria-live": "polite" });
    this.render();
  }

  /** The project's tags changed: offer the new list, forget choices of tags that are gone. */
  setTags(tags) {
    this.tags = tags;
    for (const id of [...this.chosenTags]) if (!tags.some((t) => t.id === id)) this.chosenTags.delete(id);
    this.render();
  }

  render() {
    const picker = h("input", {
      type: "file",
      id: "file-input",
      multiple: true,
      accept: "image/*",
      hidden: true,
      onchange: (e) => this.upload([...e.target.files]),
    });
    fill(this.panel, h("h2", {}, "Upload images"), this.tagChoice(), this.dropZone(picker), picker, this.statusList);
  }

  dropZone(picker) {
    const drop = h(
      "div",
      {
        class: "dropzone",
        id: "dropzone",
        tabindex: "0",
        role: "button",
        "aria-label": "Upload images: drop files here or press to pick",
        onclick: () => picker.click(),
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            picker.click();
          }
        },
        ondragover: (e) => {
          e.preventDefault();
          drop.classList.add("over");
        },
        ondragleave: () => drop.classList.remove("over"),
        ondrop: (e) => {
          e.preventDefault();
          drop.classList.remove("over");
          this.upload([...e.dataTransfer.files]);
        },
      },
      h("strong", {}, "Drop images here"),
      h("span", { class: "muted" }, " or click to choose files · JPEG, PNG, BMP, GIF, WebP, TIFF up to 6 MB"),
    );
    return drop;
  }

  tagChoice() {
    if (!this.tags.length) return null;
    if (this.project.isDetection) {
      return h("div", { class: "upload-tags" }, h("span", { class: "muted small" }, "Boxes are drawn later (click an image); upload untagged."));
    }
    return h(
      "div",
      { class: "upload-tags", id: "upload-tags" },
      h("span", { class: "muted small" }, "Tag these uploads:"),
      this.tags.map((tag) =>
        h(
          "label",
          { class: "chip-toggle" },
          h("input", {
            type: "checkbox",
            value: tag.id,
            checked: this.chosenTags.has(tag.id),
            onchange: (e) => (e.target.checked ? this.chosenTags.add(tag.id) : this.chosenTags.delete(tag.id)),
          }),
          h("span", {}, tag.name),
        ),
      ),
    );
  }

  async upload(files) {
    if (!files.length) return;
    fill(this.statusList);
    const overallSlot = h("li", { class: "upload-overall" }, progressBar({ percent: 0, stage: `uploading ${files.length} image(s)` }));
    this.statusList.append(overallSlot);
    const rows = files.map((file) => this.statusRow(file));
    let stored = 0;
    let sent = 0;
    for (const batch of batches(rows)) {
      stored += await this.sendBatch(batch);
      sent += batch.length;
      fill(overallSlot, progressBar({ percent: (100 * sent) / files.length, stage: `${sent} of ${files.length} sent, ${stored} stored` }));
    }
    toast(`${stored} of ${files.length} image(s) uploaded.`, stored === files.length ? "ok" : "error");
    await this.onUploaded();
  }

  statusRow(file) {
    const state = h("span", { class: "status-text muted" }, "waiting");
    const row = h("li", { class: "upload-row" }, h("span", { class: "file-name" }, file.name), h("span", { class: "muted small" }, formatBytes(file.size)), state);
    this.statusList.append(row);
    return { file, row, state };
  }

  /** Send one multipart batch; mark each file's row; return how many were stored. */
  async sendBatch(batch) {
    batch.forEach((r) => setRowStatus(r, "busy", "uploading…"));
    const form = new FormData();
    batch.forEach((r) => form.append("imageData", r.file, r.file.name));
    let summary;
    try {
      summary = await request("POST", tr`projects/${this.project.id}/images`, { form, query: { tagIds: [...this.chosenTags] } });
    } catch (err) {
      // Refusals come back as 207 with a status per image; an error answer may still list them.
      if (!(err instanceof ApiError && err.body && Array.isArray(err.body.images))) {
        batch.forEach((r) => setRowStatus(r, "bad", err.message || String(err)));
        return 0;
      }
      summary = err.body;
    }
    let stored = 0;
    batch.forEach((r, i) => {
      const result = (summary.images || [])[i];
      const status = result ? result.status : "ErrorUnknown";
      if (status.startsWith("OK")) stored += 1;
      setRowStatus(r, status.startsWith("OK") ? "ok" : "bad", uploadMessage(status, result));
    });
    return stored;
  }
}

function setRowStatus(row, tone, text) {
  row.state.className = `status-text status-${tone}`;
  row.state.textContent = text;
  row.row.dataset.status = tone;
}

function uploadMessage(status, result) {
  const human = STATUS_TEXT[status] || status;
  const detail = result && result.message ? ` — ${result.message}` : "";
  return status.startsWith("OK") ? human : `${human} (${status})${detail}`;
}

function* batches(rows) {
  let batch = [];
  let bytes = 0;
  for (const row of rows) {
    if (batch.length && (batch.length >= UPLOAD_BATCH || bytes + row.file.size > UPLOAD_BATCH_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(row);
    bytes += row.file.size;
  }
  if (batch.length) yield batch;
}

function formatBytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(0)} KB`;
  return `${(size / 1024 / 1024).toFixed(1)} MB`;
}
