"""A reader of a Custom Vision resource through its Training REST API (Azure's, or another Veil's: same routes).

Only what a migration needs: projects, domains, tags, images (tagged and untagged, with regions and metadata) and
each image's original bytes. Azure rate-limits a resource (S0: 10 training calls a second), so every call is
retried a bounded number of times on 429, 5xx and dropped connections, waiting what `Retry-After` asks or an
exponential backoff with jitter. A refused key or an endpoint that is not Custom Vision is a `SourceError` with
one line a user can act on.

>>> source = CustomVisionSource("https://myres.cognitiveservices.azure.com/", training_key)
>>> [p.name for p in source.projects()]
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import httpx

API_PATH = "customvision/v3.3/training"
PAGE = 256  # the most GetImages returns at once
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class SourceError(Exception):
    """The source cannot be read (wrong key, wrong endpoint, gave up retrying); the message is one line."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries per call, the first included
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0  # a longer Retry-After is refused: the source asks more than a migration waits

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter for retry number `attempt` (1-based)."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class SourceProject:
    id: str
    name: str
    description: str
    domain_id: str
    classification_type: str | None


@dataclass(frozen=True)
class SourceTag:
    id: str
    name: str
    description: str
    type: str  # Regular | Negative | GeneralProduct


@dataclass(frozen=True)
class SourceRegion:
    tag_id: str
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class SourceImage:
    id: str
    original_uri: str
    width: int
    height: int
    tag_ids: tuple[str, ...]
    regions: tuple[SourceRegion, ...]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceIteration:
    id: str
    name: str
    status: str
    trained_at: str | None
    domain_id: str | None
    precision: float | None = None
    recall: float | None = None
    average_precision: float | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def normalize_endpoint(endpoint: str) -> str:
    """`https://res.cognitiveservices.azure.com/` → `https://res.cognitiveservices.azure.com` (the resource root)."""
    endpoint = endpoint.strip().rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(
            f"--endpoint must be an http(s) URL (https://<resource>.cognitiveservices.azure.com/), not {endpoint!r}"
        )
    marker = endpoint.find("/customvision")  # a full Training API URL was given: keep the resource root
    return endpoint[:marker] if marker > 0 else endpoint


class CustomVisionSource:
    """A Custom Vision Training API endpoint read with one training key."""

    def __init__(
        self,
        endpoint: str,
        training_key: str,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = normalize_endpoint(endpoint)
        self.base = f"{self.endpoint}/{API_PATH}"
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._key = training_key
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.retries = 0  # how many calls were retried (shown in the summary)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CustomVisionSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- resources ---

    def projects(self) -> list[SourceProject]:
        return [_project(p) for p in self._json("GET", "/projects")]

    def project(self, project_id: str) -> SourceProject:
        return _project(self._json("GET", f"/projects/{project_id}"))

    def tags(self, project_id: str) -> list[SourceTag]:
        return [
            SourceTag(t["id"], t["name"], t.get("description") or "", t.get("type") or "Regular")
            for t in self._json("GET", f"/projects/{project_id}/tags")
        ]

    def image_count(self, project_id: str) -> int:
        return int(self._json("GET", f"/projects/{project_id}/images/count", params={"taggingStatus": "All"}))

    def images(self, project_id: str) -> Iterator[SourceImage]:
        """Every image, tagged and untagged, oldest first (a stable order to page through)."""
        skip = 0
        while True:
            params = {"taggingStatus": "All", "orderBy": "Oldest", "take": PAGE, "skip": skip}
            page = self._json("GET", f"/projects/{project_id}/images", params=params)
            yield from (_image(i) for i in page)
            if len(page) < PAGE:
                return
            skip += len(page)

    def image_bytes(self, image: SourceImage) -> bytes:
        """The original upload. Azure's URI is a pre-signed blob URL; Veil's needs the key (sent only to its host)."""
        same_host = urlsplit(image.original_uri).netloc == urlsplit(self.endpoint).netloc
        response = self._send("GET", image.original_uri, key=same_host)
        return response.content

    def iterations(self, project_id: str) -> list[SourceIteration]:
        """Trained iterations with their overall precision/recall/mAP at Azure's default 0.5 threshold."""
        found = []
        for it in self._json("GET", f"/projects/{project_id}/iterations"):
            perf: dict[str, Any] = {}
            if it.get("status") == "Completed":
                perf = self._json("GET", f"/projects/{project_id}/iterations/{it['id']}/performance")
            found.append(
                SourceIteration(
                    it["id"],
                    it.get("name") or "",
                    it.get("status") or "",
                    it.get("trainedAt"),
                    it.get("domainId"),
                    perf.get("precision"),
                    perf.get("recall"),
                    perf.get("averagePrecision"),
                )
            )
        return found

    # --- transport ---

    def _json(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        response = self._send(method, f"{self.base}{path}", params=params)
        try:
            return response.json()
        except ValueError:
            raise SourceError(
                f"{self.endpoint} answered {path} with something other than JSON: is it a Custom Vision endpoint?"
            ) from None

    def _send(self, method: str, url: str, *, params: dict[str, Any] | None = None, key: bool = True) -> httpx.Response:
        headers = {"Training-Key": self._key} if key else {}
        for attempt in range(1, self.retry.attempts + 1):
            wait: float | None
            try:
                response = self._client.request(method, url, params=params, headers=headers)
            except httpx.ConnectError as exc:  # nothing listens there, or no such host: retrying will not help
                raise SourceError(f"cannot reach {self.endpoint}: {_first_line(exc)}") from None
            except httpx.TransportError as exc:  # a dropped or timed-out exchange: worth another try
                if attempt == self.retry.attempts:
                    raise SourceError(f"cannot reach {self.endpoint}: {_first_line(exc)}") from None
                wait = self.retry.backoff(attempt)
            else:
                if response.status_code not in RETRIED_STATUSES:
                    self._check(response, url)
                    return response
                if attempt == self.retry.attempts:
                    raise SourceError(
                        f"{self.endpoint} still answered {response.status_code} after {attempt} tries: try again later"
                    )
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if wait is not None and wait > self.retry.max_delay_s:
                    raise SourceError(
                        f"{self.endpoint} asks to wait {wait:.0f} s (Retry-After): its quota is used up; "
                        "run the migration again later, it resumes where it stopped"
                    )
                wait = self.retry.backoff(attempt) if wait is None else wait
            self.retries += 1
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _check(self, response: httpx.Response, url: str) -> None:
        if response.is_success:
            return
        code, message = _error(response)
        if response.status_code in (401, 403):
            raise SourceError(
                f"{self.endpoint} refused the training key ({response.status_code} {code or ''}".rstrip() + ")"
            )
        if response.status_code == 404 and url.rstrip("/").endswith("/projects"):
            raise SourceError(f"{self.endpoint} does not serve the Custom Vision Training API (no {API_PATH}/projects)")
        raise SourceError(
            f"{self.endpoint}: {response.status_code} {code or ''} {message or ''} ({urlsplit(url).path})".replace(
                "  ", " "
            )
        )


def _error(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, None
    if isinstance(body, dict):
        error = body.get("error")
        inner: dict[str, Any] = error if isinstance(error, dict) else body
        return inner.get("code"), _first_line(inner.get("message") or "")
    return None, None


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


def _project(p: dict[str, Any]) -> SourceProject:
    settings = p.get("settings") or {}
    return SourceProject(
        p["id"],
        p["name"],
        p.get("description") or "",
        settings.get("domainId") or "",
        settings.get("classificationType"),
    )


def _image(i: dict[str, Any]) -> SourceImage:
    regions = tuple(
        SourceRegion(r["tagId"], float(r["left"]), float(r["top"]), float(r["width"]), float(r["height"]))
        for r in i.get("regions") or []
    )
    return SourceImage(
        id=i["id"],
        original_uri=i["originalImageUri"],
        width=int(i.get("width") or 0),
        height=int(i.get("height") or 0),
        tag_ids=tuple(t["tagId"] for t in i.get("tags") or []),
        regions=regions,
        metadata={str(k): str(v) for k, v in (i.get("metadata") or {}).items()},
    )
