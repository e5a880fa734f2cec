"""Fetching images from URLs for Custom Vision's `.../url` routes — OFF unless the operator enables it.

A server that fetches any URL it is given can be made to reach internal services (SSRF). So Veil fetches only
when `VEIL_URL_FETCH_HOSTS` lists host names (exact match, http/https only, no redirects), and each fetch is
bounded in size (`VEIL_URL_FETCH_MAX_BYTES`, default the upload limit) and time (`VEIL_URL_FETCH_TIMEOUT_S`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from veil.config import Settings
from veil.services.errors import InvalidInput
from veil.services.images import RegionIn, Upload, UploadOutcome


@dataclass(frozen=True)
class UrlFetcher:
    hosts: frozenset[str]
    max_bytes: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlFetcher | None:
        """The configured fetcher, or None when URL fetching is disabled (the default)."""
        hosts = frozenset(h.strip().lower() for h in settings.url_fetch_hosts.split(",") if h.strip())
        if not hosts:
            return None
        return cls(hosts, settings.url_fetch_max_bytes, settings.url_fetch_timeout_s)

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"{url!r} is not an http(s) URL", code="BadRequestImageUrl")
        if parts.hostname.lower() not in self.hosts:
            raise InvalidInput(
                f"host {parts.hostname!r} is not on this server's URL allow-list", code="BadRequestImageUrl"
            )

    def fetch(self, url: str) -> bytes:
        """The bytes at `url`, refused beyond the size or time limit."""
        self.check(url)
        try:
            with httpx.stream("GET", url, timeout=self.timeout_s, follow_redirects=False) as response:
                if response.status_code != 200:
                    raise InvalidInput(f"{url} answered HTTP {response.status_code}", code="BadRequestImageUrl")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InvalidInput(
                            f"{url} is larger than {self.max_bytes} bytes", code="BadRequestImageSizeBytes"
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise InvalidInput(f"could not fetch {url}: {type(exc).__name__}", code="BadRequestImageUrl") from None


def required_fetcher(settings: Settings, route: str) -> UrlFetcher:
    """The configured fetcher; `BadRequestImageUrl` naming `route` when URL fetching is disabled (the default)."""
    fetcher = UrlFetcher.from_settings(settings)
    if fetcher is None:
        raise InvalidInput(
            f"{route}: fetching images from URLs is disabled on this Veil server (a server fetching arbitrary "
            "URLs is an SSRF risk); upload the image bytes instead, or ask the operator to enable URL fetching "
            "for an allow-list of hosts (VEIL_URL_FETCH_HOSTS)",
            code="BadRequestImageUrl",
        )
    return fetcher


def fetched_upload(
    fetcher: UrlFetcher,
    url: str,
    tag_ids: Sequence[str],
    regions: Sequence[RegionIn],
    metadata: dict[str, str] | None,
) -> Upload | UploadOutcome:
    """An upload of the URL's bytes, or a per-image `ErrorSource` refusal naming why."""
    try:
        data = fetcher.fetch(url)
    except InvalidInput as refused:
        return UploadOutcome(url, "ErrorSource", refused.message)
    return Upload(data=data, source_name=url, tag_ids=tag_ids, regions=regions, metadata=dict(metadata or {}))
