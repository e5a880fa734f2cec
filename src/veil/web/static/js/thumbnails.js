// Lazy, authenticated thumbnails: an <img src> cannot send the key header, so each image is fetched with it,
// shown from a blob: URL, and that URL is revoked as soon as the grid it belongs to goes away.

const THUMBNAIL_CONCURRENCY = 4;

/**
 * Fetches thumbnails with the key header (an <img src> cannot send it), a few at a time, only when
 * they scroll into view; each becomes a blob: URL owned by the page and revoked when it is left.
 */
export class ThumbnailLoader {
  constructor(page) {
    this.page = page;
    this.pending = [];
    this.active = 0;
    this.generation = 0;
    this.urls = [];
    this.queued = [];
    this.withheld = false; // set once the server says this key's role may not read pixels
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        this.observer.unobserve(entry.target);
        this.pending.push(entry.target);
      }
      this.pump();
    }, { rootMargin: "200px" });
  }

  queue(img, uri) {
    if (!uri) return;
    if (this.withheld) {
      img.closest(".thumb")?.classList.add("withheld");
      return;
    }
    img.dataset.src = uri;
    this.queued.push(img);
    this.observer.observe(img);
  }

  /** Forget the current grid: stop fetching and revoke the blob URLs it showed. */
  reset() {
    this.generation += 1;
    this.pending = [];
    this.urls.forEach((url) => this.page.blobs.release(url));
    this.urls = [];
    this.queued = [];
    this.observer.disconnect();
  }

  stop() {
    this.reset();
  }

  pump() {
    while (this.active < THUMBNAIL_CONCURRENCY && this.pending.length) {
      const img = this.pending.shift();
      const generation = this.generation;
      this.active += 1;
      this.page.blobs
        .load(img.dataset.src)
        .then((url) => {
          if (generation === this.generation && this.page.alive) {
            img.src = url;
            this.urls.push(url);
          } else this.page.blobs.release(url);
        })
        .catch((err) => {
          if (err.status === 403) {
            // This key's role never sees pixels: stop asking (each refusal is an audit event).
            this.withheld = true;
            this.pending = [];
            this.observer.disconnect();
            this.queued.filter((other) => !other.src).forEach((other) => other.closest(".thumb")?.classList.add("withheld"));
          } else {
            img.closest(".thumb")?.classList.add("broken");
          }
        })
        .finally(() => {
          this.active -= 1;
          this.pump();
        });
    }
  }
}
