"""HTTP surface: Custom Vision-compatible Training and Prediction routes plus Veil's own `/veil/v1`.

Owns routing, request parsing, authentication dependencies and the wire schemas (camelCase lives only here).
Must not hold business logic (that is in `jobs`, `vision`, `privacy`, `store`); nothing below `api` imports FastAPI.
"""
