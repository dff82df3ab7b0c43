"""The SSRF guard of mlops.url_fetch: addresses, URLs, redirects, size, type, time, TLS."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from mlops.api_errors import ImageTooLarge, UrlRefused, UrlTimeout, UrlUnusable
from mlops.url_fetch import (
    REFUSED_BLOCKS,
    FetchPolicy,
    check_url,
    fetch_image,
    is_public_address,
    resolve_host,
)
from tests.functions.classify_helpers import (
    PUBLIC_HOST,
    PUBLIC_IP,
    FakeNetwork,
    ImageServer,
    client_tls,
    declaring,
    image_bytes,
    image_server,
    redirect,
    self_signed_certificate,
    serve_bytes,
    server_tls,
)

JPEG = image_bytes("JPEG")
PNG = image_bytes("PNG")

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # instance metadata
    "169.254.170.2",  # ECS task metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd00:ec2::254",  # IPv6 instance metadata
    "ff02::1",
    "fec0::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "::a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:7f00:1::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    # where Python 3.11's is_global and 3.13's (the Lambda runtime) disagree
    "2001:20::1",  # ORCHIDv2: global for 3.13, not for 3.11
    "2001:30::1",  # drone remote ID tags
    "2001:1::1",  # PCP anycast
    "2001:3::1",  # AMT
    "2001:4:112::1",  # AS112-v6
    "192.0.0.9",  # PCP anycast
    "192.0.0.10",  # TURN anycast
    "100::1",  # discard only
    "3fff::1",  # documentation (RFC 9637)
    "5f00::1",  # SRv6 SIDs
    "4000::1",  # not global unicast space
    "192.88.99.1",  # deprecated 6to4 relay anycast
]
PUBLIC_ADDRESSES = [
    "93.184.215.14",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(("block", "name", "source"), REFUSED_BLOCKS)
def test_every_block_of_the_deny_table_is_refused(block: str, name: str, source: str) -> None:
    network = ipaddress.ip_network(block)
    assert name and source.startswith("RFC ")
    for address in (network[0], network[-1]):
        assert not is_public_address(address), f"{address} ({name}, {source})"


FLAGS = (
    "is_global",
    "is_private",
    "is_reserved",
    "is_loopback",
    "is_link_local",
    "is_multicast",
    "is_unspecified",
    "is_site_local",
)


@pytest.mark.parametrize("python_says", [True, False], ids=["all-global", "none-global"])
def test_the_verdicts_do_not_depend_on_the_ipaddress_module(
    monkeypatch: pytest.MonkeyPatch, python_says: bool
) -> None:
    """Whatever this Python's ipaddress module thinks of an address (3.11 and 3.13 differ),
    the guard answers from its own table."""
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for flag in FLAGS:
            if hasattr(cls, flag):
                monkeypatch.setattr(cls, flag, property(lambda _self: python_says))
    assert [a for a in REFUSED_ADDRESSES if is_public_address(a)] == []
    assert [a for a in PUBLIC_ADDRESSES if not is_public_address(a)] == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/a.jpg", "only http and https"),
        ("gopher://example.com/_", "only http and https"),
        ("data:image/png;base64,iVBORw0KGgo=", "only http and https"),
        ("//example.com/a.jpg", "only http and https"),
        ("http://user:pass@example.com/a.jpg", "credentials"),
        ("http://user@example.com/a.jpg", "credentials"),
        ("http://example.com\\@169.254.169.254/", "credentials"),
        ("http://example.com:8080/a.jpg", "port 8080"),
        ("https://example.com:22/a.jpg", "port 22"),
        ("http://example.com:99999/a.jpg", "port"),
        ("http:///a.jpg", "no host"),
        ("http://example.com/a b.jpg", "spaces or control"),
        ("http://example.com/a\r\nHost: evil/", "spaces or control"),
    ],
)
def test_urls_outside_the_policy_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        check_url(url, frozenset({80, 443}))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[abc]/x.jpg", "malformed"),
        ("http://[::1/x", "malformed"),
        ("http://]x/a.jpg", "malformed"),
        ("http://[1.2.3.4]/a.jpg", "malformed"),
        (f"http://{'a' * 64}.example.com/a.jpg", "not a valid host name"),
        ("http://a..b/a.jpg", "not a valid host name"),
        ("http://.example.com/a.jpg", "not a valid host name"),
        (f"http://{'a' * 300}/a.jpg", "not a valid host name"),
        ("http://exa%20mple.com/a.jpg", "not a valid host name"),
        ("http://example.com\\x/a.jpg", "not a valid host name"),
        ("http://\u3002/a.jpg", "not a valid host name"),
    ],
)
def test_malformed_urls_are_refused_as_such(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=f"the URL.*{reason}"):
        check_url(url, frozenset({80, 443}))


@pytest.mark.parametrize(
    "url", [f"http://{'a' * 64}.example.com/a.jpg", "http://a..b/a.jpg", "http://[::1/x"]
)
def test_malformed_urls_are_refused_with_the_real_resolver(url: str) -> None:
    # getaddrinfo raises UnicodeError (not OSError) for such names: a 5 s timeout before
    with pytest.raises(UrlRefused, match=r"malformed|not a valid host name"):
        fetch_image(url, FetchPolicy(max_bytes=1000, timeout=5))


def test_the_resolver_reports_an_impossible_name_as_unresolvable() -> None:
    with pytest.raises(OSError):
        resolve_host("a..b", 80, timeout=5)


def test_a_non_ascii_path_is_percent_encoded() -> None:
    target = check_url("http://example.com/ch\u00e2t/\u00fc.jpg?q=\u00e9&r=%41", frozenset({80}))
    assert target.path == "/ch%C3%A2t/%C3%BC.jpg?q=%C3%A9&r=%41"


def test_allowed_url_keeps_path_and_query_and_drops_the_fragment() -> None:
    target = check_url("HTTPS://Images.Example.TEST/a/b.jpg?x=1&y=2#frag", frozenset({443}))
    assert (target.scheme, target.host, target.port) == ("https", "images.example.test", 443)
    assert target.path == "/a/b.jpg?x=1&y=2"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://[::1]/a.jpg",
        "http://localhost/a.jpg",
        "http://2130706433/",
    ],
)
def test_loopback_is_refused_with_the_real_resolver(url: str) -> None:
    with pytest.raises(UrlRefused, match="private, internal or reserved"):
        fetch_image(url, FetchPolicy(max_bytes=1000, timeout=5))


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


@pytest.fixture
def network(server: ImageServer) -> FakeNetwork:
    return FakeNetwork(
        server,
        {
            PUBLIC_HOST: [PUBLIC_IP],
            "cdn.example.test": [PUBLIC_IP],
            "internal.example.test": ["10.0.0.5"],
            "mixed.example.test": [PUBLIC_IP, "169.254.169.254"],
        },
    )


def test_fetches_an_image_through_the_checked_address(
    server: ImageServer, network: FakeNetwork
) -> None:
    server.routes["/cat.jpg?size=small"] = serve_bytes(JPEG, content_type="text/plain")
    image = fetch_image(f"http://{PUBLIC_HOST}/cat.jpg?size=small", network.policy())
    assert image.data == JPEG
    assert image.media_type == "image/jpeg"  # sniffed; the server's type is ignored
    assert network.connected == [(PUBLIC_IP, 80)]
    assert server.requests == [(PUBLIC_HOST, "/cat.jpg?size=small")]  # Host: the name


def test_a_host_with_any_private_address_is_refused_before_connecting(
    network: FakeNetwork,
) -> None:
    for host in ("internal.example.test", "mixed.example.test"):
        with pytest.raises(UrlRefused, match="private, internal or reserved"):
            fetch_image(f"http://{host}/a.jpg", network.policy())
    assert network.connected == []


def test_the_address_is_resolved_once_and_pinned(server: ImageServer, network: FakeNetwork) -> None:
    # A rebinding DNS: public for the check, then metadata for a second lookup.
    answers = iter([[PUBLIC_IP], ["169.254.169.254"]])
    network.resolve = lambda host, port, timeout: next(answers)  # type: ignore[method-assign]
    server.routes["/a.png"] = serve_bytes(PNG)
    assert fetch_image(f"http://{PUBLIC_HOST}/a.png", network.policy()).data == PNG
    assert network.connected == [(PUBLIC_IP, 80)]


def test_unknown_host_is_unusable(network: FakeNetwork) -> None:
    with pytest.raises(UrlUnusable, match="could not be resolved"):
        fetch_image("http://nowhere.example.test/a.jpg", network.policy())


def test_redirects_are_followed_and_rechecked(server: ImageServer, network: FakeNetwork) -> None:
    server.routes["/old"] = redirect("http://cdn.example.test/new")
    server.routes["/new"] = redirect("/final.png", status=308)
    server.routes["/final.png"] = serve_bytes(PNG)
    image = fetch_image(f"http://{PUBLIC_HOST}/old", network.policy())
    assert image.data == PNG
    assert image.url == "http://cdn.example.test/final.png"
    assert network.resolved == [PUBLIC_HOST, "cdn.example.test", "cdn.example.test"]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://internal.example.test/a.jpg",
        "http://[::ffff:169.254.169.254]/",
        "file:///etc/passwd",
        "http://cdn.example.test:8080/a.jpg",
        "http://[abc]/x.jpg",  # malformed: urljoin/urlsplit raise ValueError
        "http://[::1/x",
        "http://cdn.example.test:99999/a.jpg",
        f"http://{'a' * 64}.example.test/a.jpg",  # a label over 63 characters
    ],
)
def test_a_redirect_to_a_refused_target_is_refused(
    server: ImageServer, network: FakeNetwork, location: str
) -> None:
    server.routes["/go"] = redirect(location)
    with pytest.raises(UrlRefused):
        fetch_image(f"http://{PUBLIC_HOST}/go", network.policy())
    assert network.connected == [(PUBLIC_IP, 80)]  # the first hop only


def test_too_many_redirects(server: ImageServer, network: FakeNetwork) -> None:
    for hop in range(5):
        server.routes[f"/r{hop}"] = redirect(f"/r{hop + 1}")
    with pytest.raises(UrlUnusable, match="redirects more than 3 times"):
        fetch_image(f"http://{PUBLIC_HOST}/r0", network.policy())
    assert len(server.requests) == 4


@pytest.mark.parametrize(
    ("route", "error", "message"),
    [
        (serve_bytes(b"<html>hello</html>", "image/jpeg"), UrlUnusable, "did not return an image"),
        (serve_bytes(b"", "image/jpeg"), UrlUnusable, "did not return an image"),
        (serve_bytes(JPEG, status=404), UrlUnusable, "HTTP 404"),
        (serve_bytes(JPEG, status=204), UrlUnusable, "HTTP 204"),
        (redirect(""), UrlUnusable, "no Location"),
    ],
)
def test_answers_that_are_not_an_image(
    server: ImageServer,
    network: FakeNetwork,
    route: object,
    error: type[Exception],
    message: str,
) -> None:
    server.routes["/x"] = route  # type: ignore[assignment]
    with pytest.raises(error, match=message):
        fetch_image(f"http://{PUBLIC_HOST}/x", network.policy())


def test_declared_size_over_the_cap_is_refused_unread(
    server: ImageServer, network: FakeNetwork
) -> None:
    server.routes["/big"] = serve_bytes(JPEG + b"\0" * 2000)
    with pytest.raises(ImageTooLarge, match="bytes; the limit is 1000 bytes"):
        fetch_image(f"http://{PUBLIC_HOST}/big", network.policy(max_bytes=1000))


@pytest.mark.parametrize("length", ["\u00b2", "+10", "-5", "1_0", "10, 11", " ", "0x10"])
def test_a_malformed_content_length_is_unusable(
    server: ImageServer, network: FakeNetwork, length: str
) -> None:
    server.routes["/x"] = declaring(length, JPEG)
    with pytest.raises(UrlUnusable, match=r"malformed response: .*Content-Length"):
        fetch_image(f"http://{PUBLIC_HOST}/x", network.policy())


def test_a_repeated_identical_content_length_is_read(
    server: ImageServer, network: FakeNetwork
) -> None:
    server.routes["/x"] = declaring(f"{len(JPEG)}, {len(JPEG)}", JPEG)
    assert fetch_image(f"http://{PUBLIC_HOST}/x", network.policy()).data == JPEG


def test_streamed_size_over_the_cap_is_refused(server: ImageServer, network: FakeNetwork) -> None:
    def chunked(handler: BaseHTTPRequestHandler) -> None:
        handler.protocol_version = "HTTP/1.1"
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for piece in (JPEG, b"\0" * 4000, b"\0" * 4000):
            handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    server.routes["/stream"] = chunked
    with pytest.raises(ImageTooLarge, match="over the 3000-byte limit"):
        fetch_image(f"http://{PUBLIC_HOST}/stream", network.policy(max_bytes=3000))


def test_a_server_that_does_not_answer_times_out(server: ImageServer, network: FakeNetwork) -> None:
    server.routes["/slow"] = lambda handler: server.stop.wait(10)
    with pytest.raises(UrlTimeout, match=r"longer than 0\.3 s"):
        fetch_image(f"http://{PUBLIC_HOST}/slow", network.policy(timeout=0.3))


def test_a_trickling_server_cannot_outlast_the_deadline(
    server: ImageServer, network: FakeNetwork
) -> None:
    # Each byte arrives well within a per-read timeout; only the overall deadline ends it.
    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "5000")
        handler.end_headers()
        handler.wfile.write(JPEG[:16])
        handler.wfile.flush()
        while not server.stop.wait(0.05):
            handler.wfile.write(b"\0")
            handler.wfile.flush()

    server.routes["/trickle"] = trickle
    with pytest.raises(UrlTimeout):
        fetch_image(f"http://{PUBLIC_HOST}/trickle", network.policy(timeout=0.5))


def test_connection_refused_on_every_address_is_unusable(network: FakeNetwork) -> None:
    network.hosts["down.example.test"] = ["8.8.8.8", "1.1.1.1"]
    with pytest.raises(UrlUnusable, match="could not connect"):
        fetch_image("http://down.example.test/a.jpg", network.policy())
    assert network.connected == [("8.8.8.8", 80), ("1.1.1.1", 80)]


# --- https: the certificate is verified for the URL's host over the pinned connection ---


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), PUBLIC_HOST)


@pytest.fixture
def tls_server(tls_files: tuple[Path, Path]) -> Iterator[ImageServer]:
    with image_server(tls=server_tls(*tls_files)) as running:
        yield running


def test_https_verifies_the_certificate_for_the_original_host(
    tls_server: ImageServer, tls_files: tuple[Path, Path]
) -> None:
    network = FakeNetwork(tls_server, {PUBLIC_HOST: [PUBLIC_IP], "other.example.test": [PUBLIC_IP]})
    policy = network.policy(tls=lambda: client_tls(tls_files[0]))
    tls_server.routes["/cat.jpg"] = serve_bytes(JPEG)
    assert fetch_image(f"https://{PUBLIC_HOST}/cat.jpg", policy).data == JPEG
    assert tls_server.requests == [(PUBLIC_HOST, "/cat.jpg")]
    # the same address under another name: the certificate does not match it
    with pytest.raises(UrlUnusable, match="certificate is not valid"):
        fetch_image("https://other.example.test/cat.jpg", policy)


def test_https_to_http_redirect_is_refused(
    tls_server: ImageServer, tls_files: tuple[Path, Path]
) -> None:
    network = FakeNetwork(tls_server, {PUBLIC_HOST: [PUBLIC_IP]})
    tls_server.routes["/cat.jpg"] = redirect(f"http://{PUBLIC_HOST}/cat.jpg")
    with pytest.raises(UrlRefused, match="downgrade"):
        fetch_image(
            f"https://{PUBLIC_HOST}/cat.jpg", network.policy(tls=lambda: client_tls(tls_files[0]))
        )


def test_a_stalled_tls_handshake_times_out(network: FakeNetwork) -> None:
    # The listener never accepts: TCP connects, the TLS handshake waits for the deadline.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        network.connect = lambda address, _port, timeout: socket.create_connection(  # type: ignore[method-assign]
            ("127.0.0.1", port), timeout=timeout
        )
        with pytest.raises(UrlTimeout):
            fetch_image(f"https://{PUBLIC_HOST}/a.jpg", network.policy(timeout=0.5))
