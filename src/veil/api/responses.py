"""Response headers several routes share."""

from __future__ import annotations

from urllib.parse import quote


def attachment(filename: str) -> str:
    """A `Content-Disposition` for a download named `filename` in any script: an ASCII `filename=` for old
    clients and the exact name as RFC 6266/5987 `filename*=UTF-8''...` (HTTP headers are Latin-1 only)."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
