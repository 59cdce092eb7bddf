"""Where the service may send requests: a guard against server-side request forgery.

Tenants give the service URLs -- webhook receivers, hash feeds, alert webhooks. Without a
guard, a tenant could point one at ``http://127.0.0.1:5432``, a cloud metadata address
(``169.254.169.254``) or a host on the operator's private network, and use the service to
probe or reach it.

The guard works in two places:

- :func:`check_url` when a URL is registered: refuses non-HTTP schemes and *literal*
  private addresses and ``localhost`` names at once, with a clear error. It does not resolve
  names (a receiver's name may not resolve yet, or not from where the API runs);
- :func:`http_client` when a request is made: its connections resolve the name themselves
  and refuse to connect to any address that is not public. The check happens on the
  address actually connected to, so a name that resolves to a public address when
  registered and to ``127.0.0.1`` later (DNS rebinding) is still refused, and so is every
  redirect hop.

The operator's own calls (the library, the CLI) are trusted and unguarded by default; the
service guards what tenants register unless ``service.egress_allow_private`` is set (for a
receiver on the operator's own network).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import httpx

from rempart.errors import RempartError

_LOCAL_NAMES: Final = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_REFUSED: Final = "which is not a public address"


class EgressError(RempartError):
    """A URL or address the service must not send requests to (``forbidden_destination``)."""

    code = "forbidden_destination"
    status = 422


def _hint() -> str:
    return (
        "use a public http(s) address; an operator can allow private addresses with "
        "REMPART_SERVICE__EGRESS_ALLOW_PRIVATE=true"
    )


def is_public(address: str) -> bool:
    """Whether ``address`` (an IP literal) is a globally routable unicast address.

    Loopback, private (RFC 1918, ULA), link-local (incl. cloud metadata), CGNAT, multicast,
    reserved and unspecified addresses are not; IPv4-mapped IPv6 is judged as its IPv4.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse ``url`` when, without ``allow_private``, its host is obviously not public.

    Only the destination is judged; the URL's form (scheme, length...) is the caller's
    validation. Names are not resolved here (see the module docstring): the connection-time
    check in :func:`http_client` is the one that cannot be bypassed.
    """
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if allow_private or not host:
        return
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        raise EgressError(f"{host} is this machine, not a public address", hint=_hint())
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return
    if not is_public(str(literal)):
        raise EgressError(f"{host} is not a public address", hint=_hint())


def is_refusal(exc: BaseException) -> bool:
    """Whether an httpx error is the guard refusing an address (not a network failure)."""
    return isinstance(exc, httpx.ConnectError) and _REFUSED in str(exc)


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to public addresses it resolved itself."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from exc
        addresses = [str(info[4][0]) for info in infos]
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            # Refuse if any address is private: connecting to "the public one" would let a
            # name with both kinds of records reach the private one on a retry.
            raise httpcore.ConnectError(f"{host} resolves to {refused[0]}, {_REFUSED}")
        return super().connect_tcp(
            addresses[0], port, timeout, local_address=local_address, socket_options=socket_options
        )


def http_client(*, allow_private: bool, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` (``options`` as for httpx) that, unless ``allow_private``, only
    connects to public addresses."""
    if allow_private:
        return httpx.Client(**options)
    return httpx.Client(transport=guarded_transport(), **options)


def guarded_transport() -> httpx.HTTPTransport:
    """An httpx transport that connects only to public addresses.

    TLS still checks the certificate against the URL's host name: only the TCP connection
    goes to the address resolved and checked here.
    """
    transport = httpx.HTTPTransport()
    # httpx offers no public hook for the network backend; the pool's attribute is stable
    # across httpcore 1.x (pinned in requirements.lock), and tests/test_egress.py fails if not.
    pool = transport._pool
    if not hasattr(pool, "_network_backend"):  # pragma: no cover - a future httpcore
        raise RuntimeError("httpcore changed: the egress guard cannot be installed")
    pool._network_backend = _GuardedBackend()
    return transport
