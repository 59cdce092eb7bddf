"""A client for the StopNCII.org partner API: fetch the hash stream, send feedback.

StopNCII lets a person hash her own intimate images on her device and share only the
hashes; partner platforms pull them and block matching uploads. The API, as partners
see it (and as Meta's python-threatexchange client models it):

``GET {base}/FetchHashes?startTimestamp=<unix s>&pageSize=<n>[&nextPageToken=<t>]``
    answers ``{"count", "hashRecords": [...], "nextPageToken", "hasMoreRecords",
    "nextSetTimestamp"}``. Each record is the *current* state of one hash::

        {"signalType": "ImagePDQ", "hashValue": "<hex>", "hashStatus": "Active",
         "lastModtimestamp": 1625167804,
         "caseNumbers": {"<case uuid>": "Active", ...},
         "CSPFeedbacks": [{"source": "...", "feedbackValue": "Blocked", "tags": [...]}]}

    A later record for the same hash replaces an earlier one. Page with the token while
    ``hasMoreRecords``; then keep ``nextSetTimestamp`` as the checkpoint for the next pull.

``POST {base}/SubmitFeedback``
    with ``{"count": n, "hashFeedbacks": [{"hashValue", "feedbackValue", "tags"}]}``.

Every request carries the ``Ocp-Apim-Subscription-Key`` header (the partner's API
Management key) and, where StopNCII issued one, ``x-functions-key``.

**Status is what matters.** ``hashStatus`` ``Withdrawn`` or ``Deleted`` means the person
withdrew her hash (or StopNCII removed it): a platform must stop matching it at once. This
client keeps statuses, signal types and feedback values as the strings the server sent, so
a value it does not know never makes a record (a withdrawal, say) disappear silently; the
feed sync decides what to do with each (:mod:`rempart.exchanges.feeds`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Self

import httpx

from rempart.errors import RempartError

log = logging.getLogger("rempart.feeds.stopncii")

DEFAULT_BASE_URL: Final = "https://api.stopncii.org/v1"
SUBSCRIPTION_HEADER: Final = "Ocp-Apim-Subscription-Key"
FUNCTION_HEADER: Final = "x-functions-key"
#: The records per page Meta's client asks for; the server may send fewer.
DEFAULT_PAGE_SIZE: Final = 800
#: A page is a few hundred records of a few hundred bytes: 32 MiB means the wrong endpoint.
DEFAULT_MAX_PAGE_BYTES: Final = 32 * 1024 * 1024
DEFAULT_TIMEOUT_S: Final = 30.0
#: GETs are retried on connection errors, 429 and 5xx (0.5 s, then 1 s); POSTs never are.
DEFAULT_RETRIES: Final = 2
_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_BACKOFF_S: Final = 0.5


class HashStatus(StrEnum):
    """A hash's aggregate status across the cases that submitted it."""

    UNKNOWN = "Unknown"
    RECEIVED = "Received"
    ACTIVE = "Active"
    WITHDRAWN = "Withdrawn"
    DELETED = "Deleted"


#: Statuses that mean "stop matching this hash now".
REMOVED_STATUSES: Final = frozenset({HashStatus.WITHDRAWN, HashStatus.DELETED})
#: Statuses under which a hash is matched. ``Received`` is a new submission: StopNCII
#: already shares it, and waiting for ``Active`` would leave fresh reports unprotected.
LIVE_STATUSES: Final = frozenset({HashStatus.ACTIVE, HashStatus.RECEIVED})


class SignalType(StrEnum):
    """What a record's ``hashValue`` is."""

    UNKNOWN = "Unknown"
    IMAGE_PDQ = "ImagePDQ"
    VIDEO_MD5 = "VideoMD5"
    VIDEO_TMK = "VideoTMK"
    TEXT = "Text"
    URL = "URL"


#: StopNCII signal types Rempart stores, and as what (a video's MD5 is an exact file hash).
SIGNALS: Final[Mapping[str, str]] = {SignalType.IMAGE_PDQ: "pdq", SignalType.VIDEO_MD5: "md5"}


class FeedbackValue(StrEnum):
    """What a platform (a CSP, in StopNCII's words) reports about a hash."""

    NONE = "None"  # tags only
    QUALITY_UNKNOWN = "QualityUnknown"
    PENDING_REVIEW = "PendingReview"  # it matched; a reviewer will look
    BLOCKED = "Blocked"  # reviewed: NCII, blocked
    NOT_BLOCKED = "NotBlocked"  # reviewed: not shown to be NCII
    WITHDRAWN = "Withdrawn"
    DELETED = "Deleted"


class StopNCIIError(RempartError):
    """The StopNCII API failed or answered something unreadable (``stopncii_error``)."""

    code = "stopncii_error"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, code=code, hint=hint)
        self.http_status = http_status


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CSPFeedback:
    """One platform's feedback on a hash, as the stream carries it."""

    value: str
    source: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HashRecord:
    """The current state of one hash. Strings are kept as sent (see the module doc)."""

    signal_type: str
    hash_value: str
    status: str
    last_modified: int | None
    #: Case id -> that case's status (the aggregate is ``status``).
    case_numbers: Mapping[str, str] = field(default_factory=dict)
    feedbacks: tuple[CSPFeedback, ...] = ()

    @property
    def removed(self) -> bool:
        """True when the hash must no longer be matched (``Withdrawn`` or ``Deleted``)."""
        return self.status in REMOVED_STATUSES

    @property
    def live(self) -> bool:
        """True when the hash is to be matched (``Active`` or ``Received``)."""
        return self.status in LIVE_STATUSES


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record of the page that could not be read: its position (1-based) and why."""

    index: int
    message: str


@dataclass(frozen=True, slots=True)
class HashPage:
    """One ``FetchHashes`` answer."""

    records: tuple[HashRecord, ...]
    has_more: bool
    next_page_token: str | None
    #: The checkpoint to resume from once the last page is read (``None`` if not sent).
    next_set_timestamp: int | None
    count: int
    bad_records: tuple[BadRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class HashFeedback:
    """Feedback to send on one hash: e.g. ``Blocked`` after review, with tags."""

    hash_value: str
    value: FeedbackValue | str
    tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The item as ``SubmitFeedback`` takes it."""
        return {
            "hashValue": self.hash_value,
            "feedbackValue": str(self.value),
            "tags": sorted(set(self.tags)),
        }


# -- parsing (pure) -------------------------------------------------------------------------


def parse_page(data: object) -> HashPage:
    """Read a ``FetchHashes`` JSON answer. A malformed record becomes a :class:`BadRecord`
    (the rest of the page stands); a malformed page raises :class:`StopNCIIError`."""
    if not isinstance(data, dict) or not isinstance(data.get("hashRecords", []), list):
        raise StopNCIIError(
            "FetchHashes answered something other than a page of hash records",
            hint="check the feed's base URL (it ends in /v1 for StopNCII)",
        )
    records: list[HashRecord] = []
    bad: list[BadRecord] = []
    for i, item in enumerate(data.get("hashRecords") or [], start=1):
        try:
            records.append(_record(item))
        except ValueError as exc:
            bad.append(BadRecord(i, str(exc)))
    token = data.get("nextPageToken")
    return HashPage(
        records=tuple(records),
        has_more=bool(data.get("hasMoreRecords", False)),
        next_page_token=token if isinstance(token, str) and token else None,
        next_set_timestamp=_int_or_none(data.get("nextSetTimestamp")),
        count=_int_or_none(data.get("count")) or len(records) + len(bad),
        bad_records=tuple(bad),
    )


def _record(item: object) -> HashRecord:
    if not isinstance(item, dict):
        raise ValueError("record is not a JSON object")
    value = item.get("hashValue")
    status = item.get("hashStatus")
    if not isinstance(value, str) or not value:
        raise ValueError("record has no hashValue")
    if not isinstance(status, str) or not status:
        raise ValueError(f"record for hash {value[:80]!r} has no hashStatus")
    cases = item.get("caseNumbers")
    # The server has been seen sending [] for "no cases"; anything else that is not an object
    # is ignored: cases are informational, the aggregate status decides.
    case_numbers = {str(k): str(v) for k, v in cases.items()} if isinstance(cases, dict) else {}
    feedbacks: list[CSPFeedback] = []
    for fb in item.get("CSPFeedbacks") or []:
        if isinstance(fb, dict):
            tags = fb.get("tags") or []
            feedbacks.append(
                CSPFeedback(
                    value=str(fb.get("feedbackValue", "")),
                    source=str(fb.get("source", "")),
                    tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
                )
            )
    return HashRecord(
        signal_type=str(item.get("signalType") or SignalType.UNKNOWN),
        hash_value=value,
        status=status,
        last_modified=_int_or_none(item.get("lastModtimestamp")),
        case_numbers=case_numbers,
        feedbacks=tuple(feedbacks),
    )


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


# -- the client -----------------------------------------------------------------------------


class StopNCIIClient:
    """The StopNCII partner API over HTTPS (httpx). Use as a context manager, or close().

    Keys never appear in errors, logs or ``repr``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        subscription_key: str,
        function_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not subscription_key:
            raise StopNCIIError(
                "a StopNCII subscription key is required",
                code="bad_feed",
                hint="set config.subscription_key to the Ocp-Apim-Subscription-Key StopNCII "
                "gave you",
            )
        headers = {SUBSCRIPTION_HEADER: subscription_key, "Accept": "application/json"}
        if function_key:
            headers[FUNCTION_HEADER] = function_key
        self._base = base_url.rstrip("/")
        self._retries = max(0, retries)
        self._max_bytes = max_page_bytes
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            # Never follow a redirect: it would carry the keys to wherever it points.
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"StopNCIIClient({self._base!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- FetchHashes ---------------------------------------------------------------------------

    def fetch_hashes(
        self,
        *,
        start_timestamp: int,
        page_token: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> HashPage:
        """One page of the hash stream from ``start_timestamp`` (unix seconds), or the page
        ``page_token`` names within that stream."""
        params: dict[str, Any] = {"startTimestamp": int(start_timestamp), "pageSize": page_size}
        if page_token:
            params["nextPageToken"] = page_token
        return parse_page(self._get("FetchHashes", params))

    def iter_pages(
        self,
        *,
        start_timestamp: int,
        page_token: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_pages: int | None = None,
    ) -> Iterator[HashPage]:
        """Pages from ``start_timestamp`` (and ``page_token``) until ``hasMoreRecords`` is
        false, or ``max_pages`` pages. A server that repeats a page token is an error (it
        would loop for ever)."""
        seen: set[str] = set()
        n = 0
        while True:
            page = self.fetch_hashes(
                start_timestamp=start_timestamp, page_token=page_token, page_size=page_size
            )
            n += 1
            yield page
            if not page.has_more or (max_pages is not None and n >= max_pages):
                return
            if page.next_page_token is None or page.next_page_token in seen:
                raise StopNCIIError(
                    "FetchHashes says more records follow but gives no new page token",
                    hint="retry later; StopNCII's paging may be failing",
                )
            seen.add(page.next_page_token)
            page_token = page.next_page_token

    # -- SubmitFeedback ------------------------------------------------------------------------

    def submit_feedback(self, feedback: Iterable[HashFeedback]) -> int:
        """Send feedback on hashes (one request); returns how many items were sent."""
        items = [f.to_json() for f in feedback]
        if not items:
            return 0
        self._request(
            "POST", "SubmitFeedback", json_body={"count": len(items), "hashFeedbacks": items}
        )
        return len(items)

    def submit_one(
        self, hash_value: str, value: FeedbackValue | str, tags: Iterable[str] = ()
    ) -> None:
        """Feedback on a single hash (e.g. ``Blocked`` after a reviewer confirmed a match)."""
        self.submit_feedback([HashFeedback(hash_value, value, tuple(tags))])

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, endpoint: str, params: Mapping[str, Any]) -> Any:
        attempt = 0
        while True:
            try:
                return self._request("GET", endpoint, params=params)
            except StopNCIIError as exc:
                retryable = exc.http_status is None or exc.http_status in _RETRY_STATUS
                if not retryable or attempt >= self._retries:
                    raise
            attempt += 1
            delay = _BACKOFF_S * 2 ** (attempt - 1)
            log.info("StopNCII %s failed; retry %d in %.1f s", endpoint, attempt, delay)
            time.sleep(delay)

    def _request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        url = f"{self._base}/{endpoint}"
        try:
            with self._http.stream(method, url, params=params, json=json_body) as response:
                if response.status_code >= 300:
                    raise _status_error(endpoint, response.status_code)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise StopNCIIError(
                            f"StopNCII {endpoint} answered more than {self._max_bytes} bytes",
                            http_status=response.status_code,
                            hint="check the feed's base URL",
                        )
        except httpx.HTTPError as exc:
            # The message names the exception type only: httpx's text can include the URL.
            raise StopNCIIError(
                f"cannot reach StopNCII for {endpoint}: {type(exc).__name__}",
                hint="check the base URL and the network; the next run retries",
            ) from None
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise StopNCIIError(
                f"StopNCII {endpoint} did not answer JSON", http_status=response.status_code
            ) from None


def _status_error(endpoint: str, status: int) -> StopNCIIError:
    if status in (401, 403):
        hint = "check the subscription key (and function key) in the feed's config"
    elif 300 <= status < 400:
        hint = "the API redirected; set the feed's URL to the final address"
    elif status == 429:
        hint = "StopNCII is rate-limiting; the next run retries"
    else:
        hint = "the next run retries; if it persists, contact StopNCII"
    return StopNCIIError(
        f"StopNCII {endpoint} answered HTTP {status}", http_status=status, hint=hint
    )
