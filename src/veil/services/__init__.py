"""Use cases, one module per resource: projects, privacy (a project's policy and its own detector), tags, images
(training images), labels (image tags, regions, metadata), iterations (read, rename, delete, publish,
performance), training (start, cancel, the job), exports, predictions, models (the loaded-model cache),
portability (project export/import), url_fetch (images by URL), anonymize (store-nothing), keys. `ingest` is
the one path by which pixels are kept (decode → strip → anonymize → re-encode → seal). `context`, `vault`,
`domains` and `errors` are shared plumbing: the running Veil, per-blob encryption, domains, error types.

Owns what happens on each user action (validation, audit events, transactions). Must not know the API's HTTP
(no FastAPI, no status codes or request/response objects in what it takes or gives; url_fetch's outgoing
fetches are its only HTTP client): it raises `veil.services.errors` exceptions that the API and CLI translate.
"""
