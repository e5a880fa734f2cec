"""Use cases — projects (and their privacy policy; privacy_detector: a policy's own detector), tags, images,
labels, training, prediction, exports, portability (project export/import), url_fetch (images by URL),
anonymize (store-nothing), keys — orchestrating the layers below (ingest → privacy → crypto → blobs/db; vision
through jobs). `context`, `vault`, `domains` and `errors` are shared plumbing: the running Veil, per-project
encryption, domains, error types.

Owns what happens on each user action (validation, audit events, transactions). Must not know the API's HTTP
(no FastAPI, no status codes or request/response objects in what it takes or gives; url_fetch's outgoing
fetches are its only HTTP client): it raises `veil.services.errors` exceptions that the API and CLI translate.
"""
