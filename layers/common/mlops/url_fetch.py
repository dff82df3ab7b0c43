"""Fetch an image from a caller's URL without letting the URL reach inside the network.

A URL given to a Lambda is a server-side request forgery risk: it can point at the
instance metadata service (169.254.169.254), at VPC-internal hosts, or at a name whose DNS
answer changes between the check and the connection. The guard, per hop:

- a malformed URL (a bad IPv6 literal, an impossible host name, a bad port) is refused
  as such, whether the caller sent it or a redirect's Location holds it;
- http and https only, no credentials in the URL, ports 80 and 443 only (public image
  hosts use them; other ports are typically internal services);
- the host is resolved once and *every* address must be public (``is_public_address``);
- the connection goes to the checked address (pinned), so a DNS answer that changes
  afterwards (rebinding) cannot redirect it; https still verifies the certificate against,
  and sends SNI and Host for, the original host name;
- redirects are followed by hand, at most ``max_redirects``, each target checked again, and
  never from https down to http;
- one deadline for the whole fetch (DNS, connect, every hop, every read), enforced by a
  watchdog that shuts the socket down, so a server trickling bytes cannot hold the Lambda;
- the size cap is checked on Content-Length and again while streaming, and the body must
  start with image magic bytes (checked as soon as the first bytes arrive).

Standard library only, so the Lambda needs no dependency for it. Resolution and the
socket connection are injectable (``FetchPolicy.resolve`` / ``connect``): tests map a fake
public name to a local server through them instead of weakening the address check.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote, urljoin, urlsplit

from mlops.api_errors import ImageTooLarge, UrlRefused, UrlTimeout, UrlUnusable
from mlops.http_fields import InvalidLength, content_length
from mlops.images import SNIFF_BYTES, sniff

Resolver = Callable[[str, int, float], list[str]]
"""(host, port, timeout seconds) -> the host's addresses, as strings."""
Connector = Callable[[str, int, float], socket.socket]
"""(address, port, timeout seconds) -> a connected TCP socket."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# A host name as DNS takes it (after IDNA encoding): letters, digits, "-", "_" and dots.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Characters kept as they are in the request line's path: RFC 3986's reserved set and
# "%" (existing escapes); anything else (non-ASCII, quotes, braces) is percent-encoded.
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"

# Prefixes whose IPv6 addresses carry an IPv4 address: judged by that IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Where the refusals come from: every block of the IANA IPv4 and IPv6 Special-Purpose
# Address Registries (those marked globally reachable too: anycast services, AS112 and
# identifiers, where no image host lives) but the three that embed an IPv4 address
# (::ffff:0:0/96, 64:ff9b::/96, 2002::/16: judged by that address), plus multicast and the
# deprecated site-local block. An explicit table and not ``ipaddress``'s ``is_global``,
# whose answer changes between Python versions (3.13 made 2001:20::/28 global, for one).
REFUSED_BLOCKS: tuple[tuple[str, str, str], ...] = (
    ("0.0.0.0/8", "this network", "RFC 791"),
    ("10.0.0.0/8", "private use", "RFC 1918"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)", "RFC 6598"),
    ("127.0.0.0/8", "loopback", "RFC 1122"),
    ("169.254.0.0/16", "link local (instance metadata)", "RFC 3927"),
    ("172.16.0.0/12", "private use", "RFC 1918"),
    ("192.0.0.0/24", "IETF protocol assignments", "RFC 6890"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)", "RFC 5737"),
    ("192.31.196.0/24", "AS112-v4", "RFC 7535"),
    ("192.52.193.0/24", "AMT", "RFC 7450"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast", "RFC 7526"),
    ("192.168.0.0/16", "private use", "RFC 1918"),
    ("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534"),
    ("198.18.0.0/15", "benchmarking", "RFC 2544"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)", "RFC 5737"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)", "RFC 5737"),
    ("224.0.0.0/4", "multicast", "RFC 5771"),
    ("240.0.0.0/4", "reserved", "RFC 1112"),
    ("255.255.255.255/32", "limited broadcast", "RFC 919"),
    ("::/128", "unspecified", "RFC 4291"),
    ("::1/128", "loopback", "RFC 4291"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", "RFC 8215"),
    ("100::/64", "discard only", "RFC 6666"),
    ("100:0:0:1::/64", "dummy IPv6 prefix", "RFC 9780"),
    ("2001::/23", "IETF protocol assignments (Teredo, ORCHIDv2, anycast)", "RFC 2928"),
    ("2001:db8::/32", "documentation", "RFC 3849"),
    ("2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534"),
    ("3fff::/20", "documentation", "RFC 9637"),
    ("5f00::/16", "segment routing (SRv6) SIDs", "RFC 9602"),
    ("fc00::/7", "unique local", "RFC 4193"),
    ("fe80::/10", "link-local unicast", "RFC 4291"),
    ("fec0::/10", "deprecated site-local", "RFC 3879"),
    ("ff00::/8", "multicast", "RFC 4291"),
)
_REFUSED = tuple(ipaddress.ip_network(block) for block, _, _ in REFUSED_BLOCKS)
# Outside 2000::/3 no IPv6 address is assigned as global unicast (RFC 4291, section 2.4).
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for a globally routable unicast address, by ``REFUSED_BLOCKS``.

    Refuses private, loopback, link-local (169.254.169.254, fe80::), multicast, reserved,
    unspecified, broadcast, carrier-grade NAT (100.64.0.0/10), documentation and benchmark
    ranges, unique-local (fc00::/7), Teredo, local-use NAT64, IPv6 outside 2000::/3, and
    any IPv6 address that embeds an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64
    64:ff9b::/96, 6to4 2002::/16) unless the embedded IPv4 address is itself public.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip  # the scope id ("%eth0") does not change the answer
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                return is_public_address(embedded)
            if ip not in _GLOBAL_UNICAST_V6:
                return False
    return not any(ip in block for block in _REFUSED)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # :: and ::1 are not v4
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def resolve_host(host: str, port: int, timeout: float) -> list[str]:
    """The host's addresses by the system resolver, bounded by ``timeout``.

    getaddrinfo has no timeout of its own, so it runs in a daemon thread; one that
    outlives the deadline is abandoned (it ends when the resolver gives up).
    """
    answer: queue.Queue[list[str] | OSError] = queue.Queue(maxsize=1)

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answer.put(list(dict.fromkeys(str(info[4][0]) for info in infos)))
        except OSError as exc:  # socket.gaierror
            answer.put(exc)
        except ValueError as exc:  # UnicodeError: a name that cannot be IDNA-encoded
            answer.put(socket.gaierror(socket.EAI_NONAME, str(exc)))

    threading.Thread(target=lookup, name="resolve", daemon=True).start()
    try:
        result = answer.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"resolving {host} took longer than {timeout:.1f} s") from None
    if isinstance(result, OSError):
        raise result
    return result


def connect_to(address: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((address, port), timeout=timeout)


@cache
def _default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    timeout: float  # the deadline for the whole fetch, redirects included
    connect_timeout: float = 3.0
    max_redirects: int = 3
    ports: frozenset[int] = frozenset({80, 443})
    resolve: Resolver = resolve_host
    connect: Connector = connect_to
    tls: Callable[[], ssl.SSLContext] = _default_tls
    user_agent: str = "sagemaker-image-pipeline-classify/1"


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    media_type: str  # sniffed from the bytes, not the server's Content-Type
    url: str  # after redirects


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line


def fetch_image(url: str, policy: FetchPolicy) -> FetchedImage:
    """Download the image at ``url`` under ``policy``.

    Raises UrlRefused (a URL or address the guard does not allow), UrlUnusable (no image
    there: unreachable, an HTTP error, not an image, too many redirects), UrlTimeout (the
    deadline passed) or ImageTooLarge (over ``policy.max_bytes``).
    """
    deadline = time.monotonic() + policy.timeout
    current = url
    for hop in range(policy.max_redirects + 1):
        target = check_url(current, policy.ports, "the URL" if hop == 0 else "the redirect")
        status, location, body = _exchange(target, policy, deadline)
        if status not in REDIRECT_STATUSES:
            media_type = sniff(body)
            assert media_type is not None  # _read_body checked the magic bytes
            return FetchedImage(body, media_type, current)
        try:
            following = urljoin(current, location)
        except ValueError as exc:  # e.g. "http://[::1/x": urlsplit refuses it
            raise UrlRefused(f"the redirect's Location is a malformed URL ({exc})") from None
        if target.scheme == "https" and urlsplit(following).scheme.lower() == "http":
            raise UrlRefused("the URL redirects from https to http; refusing the downgrade")
        current = following
    raise UrlUnusable(f"the URL redirects more than {policy.max_redirects} times")


def check_url(url: str, ports: frozenset[int], what: str = "the URL") -> _Target:
    """The parts of an allowed URL; raises UrlRefused for anything else, malformed
    URLs included (``what`` names the URL in messages: the caller's, or a redirect's)."""
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise UrlRefused(f"{what} contains spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname  # parses the netloc: brackets, IPv6 literals
    except ValueError as exc:  # "Invalid IPv6 URL", "'abc' does not appear to be an IPv6..."
        raise UrlRefused(f"{what} is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs are fetched, not {scheme or 'no scheme'!r}")
    if "@" in parts.netloc:
        raise UrlRefused("URLs with credentials (user@host) are refused")
    if not hostname:
        raise UrlRefused(f"{what} has no host")
    _check_host(hostname, what)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UrlRefused(f"{what}'s port is not a number between 0 and 65535") from None
    if port not in ports:
        allowed = " and ".join(str(p) for p in sorted(ports))
        raise UrlRefused(f"port {port} is not allowed; only {allowed} are fetched")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, hostname, port, quote(path, safe=_PATH_SAFE))


def _check_host(host: str, what: str) -> None:
    """An IP literal, or a name that DNS could hold; raises UrlRefused for anything else."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:  # an empty label ("a..b") or one over 63 characters
        raise UrlRefused(f"{what}'s host {host[:80]!r} is not a valid host name") from None
    if len(encoded) > 253 or not _HOST_NAME.fullmatch(encoded):
        raise UrlRefused(f"{what}'s host {host[:80]!r} is not a valid host name")


def _exchange(target: _Target, policy: FetchPolicy, deadline: float) -> tuple[int, str, bytes]:
    """One request: (status, Location, body); the body is read only for a 200."""
    addresses = _public_addresses(target, policy, deadline)
    conn: http.client.HTTPConnection | None = None
    with _Watchdog(deadline) as watchdog:
        try:
            conn = _open(_connect(addresses, target, policy, deadline), target, policy, watchdog)
            conn.request(
                "GET",
                target.path,
                headers={
                    "User-Agent": policy.user_agent,
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
            )
            response = conn.getresponse()
            if response.status in REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise UrlUnusable(f"the URL answered HTTP {response.status} with no Location")
                return response.status, location, b""
            if response.status != 200:
                raise UrlUnusable(f"the URL answered HTTP {response.status}, not 200")
            return response.status, "", _read_body(response, policy.max_bytes, deadline)
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.expired or isinstance(exc, TimeoutError):
                raise _timeout(policy) from None
            raise UrlUnusable(f"the download from {target.host} failed ({_reason(exc)})") from None
        finally:
            if conn is not None:
                conn.close()


def _public_addresses(target: _Target, policy: FetchPolicy, deadline: float) -> list[str]:
    try:
        addresses = [str(ipaddress.ip_address(target.host))]  # a literal needs no lookup
    except ValueError:
        addresses = _resolve(target, policy, deadline)
    if not all(is_public_address(a) for a in addresses):
        raise UrlRefused(
            f"the host {target.host!r} resolves to a private, internal or reserved address; "
            "only public addresses are fetched"
        )
    return addresses


def _resolve(target: _Target, policy: FetchPolicy, deadline: float) -> list[str]:
    try:
        addresses = policy.resolve(target.host, target.port, _remaining(deadline, policy))
    except TimeoutError:
        raise _timeout(policy) from None
    except OSError:
        raise UrlUnusable(f"the host {target.host!r} could not be resolved") from None
    if not addresses:
        raise UrlUnusable(f"the host {target.host!r} has no addresses")
    return addresses


def _connect(
    addresses: list[str], target: _Target, policy: FetchPolicy, deadline: float
) -> socket.socket:
    for address in addresses:
        timeout = min(policy.connect_timeout, _remaining(deadline, policy))
        try:
            return policy.connect(address, target.port, timeout)
        except OSError:
            continue  # the next address, if any
    raise UrlUnusable(f"could not connect to {target.host}:{target.port}")


def _open(
    sock: socket.socket, target: _Target, policy: FetchPolicy, watchdog: _Watchdog
) -> http.client.HTTPConnection:
    """An HTTP connection over the already connected (pinned) socket."""
    watchdog.watch(sock)
    if target.scheme == "http":
        conn = http.client.HTTPConnection(target.host, target.port)
        conn.sock = sock
        return conn
    context = policy.tls()
    https = http.client.HTTPSConnection(target.host, target.port, context=context)
    try:  # wrapping detaches ``sock``: watch the TLS socket before the handshake blocks
        tls = context.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    https.sock = watchdog.watch(tls)
    tls.do_handshake()
    return https


def _read_body(response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    try:
        declared = content_length(response.headers.get_all("Content-Length") or ())
    except InvalidLength as exc:
        raise UrlUnusable(f"the server at the URL sent a malformed response: {exc}") from None
    if declared is not None and declared > max_bytes:
        raise ImageTooLarge(
            f"the image at the URL is {declared} bytes; the limit is {max_bytes} bytes"
        )
    data = bytearray()
    sniffed = False
    while chunk := response.read1(_CHUNK):
        data += chunk
        if len(data) > max_bytes:
            raise ImageTooLarge(f"the image at the URL is over the {max_bytes}-byte limit")
        if not sniffed and len(data) >= SNIFF_BYTES:
            _require_image(data)
            sniffed = True
        if time.monotonic() >= deadline:
            raise TimeoutError
    if time.monotonic() >= deadline:  # the watchdog ended the body early, it is cut short
        raise TimeoutError
    _require_image(data)
    return bytes(data)


def _require_image(data: bytes | bytearray) -> None:
    if sniff(bytes(data[:SNIFF_BYTES])) is None:
        raise UrlUnusable(
            "the URL did not return an image (JPEG, PNG, GIF, WebP, BMP or TIFF expected)"
        )


class _Watchdog:
    """Shuts the watched socket down at the deadline, ending any read or write blocked on it.

    Socket timeouts bound each operation; this bounds their sum, so a server trickling
    one byte at a time cannot outlast the deadline.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(max(0.001, self.deadline - time.monotonic()))
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # closed already
                self._sock.shutdown(socket.SHUT_RDWR)


def _remaining(deadline: float, policy: FetchPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timeout(policy)
    return left


def _timeout(policy: FetchPolicy) -> UrlTimeout:
    return UrlTimeout(f"fetching the URL took longer than {policy.timeout:g} s")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "its TLS certificate is not valid for the host"
    return type(exc).__name__ if not str(exc) else str(exc)[:200]
