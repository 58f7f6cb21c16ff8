"""Fetch a web page safely and extract its main text (trafilatura).

Guards: http(s) only, well-formed URLs only (a bad port, bracket or 64-character host label is a
`FetchError`), a read timeout and ONE total deadline per page covering DNS, connect, headers, every
redirect hop and the body (each hop's timeouts are cut to the time left, and a timer shuts the
connection down when it runs out, so a server dripping one byte at a time cannot hold a run), a byte
cap on the raw and on the decoded body (gzip/deflate are decoded here a bounded step at a time, at
most two stacked, so a nested gzip bomb stops at the cap instead of inflating in memory), a
content-type allow-list, a redirect limit with every hop re-checked, and an SSRF guard: the host is
resolved once, every address must be globally routable (``ip.is_global`` plus the IANA
special-purpose ranges it misses, such as site-local ``fec0::/10`` and the 6to4 relay anycast
``192.88.99.0/24``, after unwrapping IPv4 carried in IPv4-mapped, 6to4, Teredo and NAT64 addresses,
so ``2002:7f00:1::1`` is loopback and 100.64.0.0/10 is refused), and the connection goes to the
address that was checked (the URL's host is kept for the Host header and TLS SNI/verification), so a
name whose answer changes between check and connect (DNS rebinding) cannot reach a private address.
Hosts in ``fetch.allow_hosts`` skip the address check. Page text is untrusted data: `Page.quoted`
renders it as a quote so nothing in it can pass for an instruction to the model.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx
from pydantic import BaseModel

from sounding.settings import FetchSettings


class Page(BaseModel):
    url: str
    title: str
    text: str

    def quoted(self, max_chars: int = 4000) -> str:
        """The page as a quotation: every line prefixed with '> ', never as free text in a prompt."""
        body = self.text[:max_chars]
        return "\n".join("> " + line for line in body.splitlines() if line.strip())


class FetchError(RuntimeError):
    """A page that was refused or could not be fetched; the message says which guard or failure."""


class PageFetcher(Protocol):
    def fetch(self, url: str) -> Page: ...


Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except (OSError, UnicodeError) as exc:  # gaierror, or a name IDNA cannot encode
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from exc


def split_url(url: str) -> SplitResult:
    """``urlsplit`` that raises `FetchError` instead of ValueError/UnicodeError for a malformed URL
    (``http://[::1``, a port out of range, an empty or 64-character host label)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsed lazily: ValueError for a port out of range or not a number
        (parts.hostname or "").encode("idna")  # empty or over-long labels fail here, not in connect
    except ValueError as exc:  # UnicodeError is a ValueError
        raise FetchError(f"refused {url!r}: malformed URL ({exc})") from exc
    return parts


NAT64 = ipaddress.ip_network("64:ff9b::/96")

#: IANA special-purpose ranges (and deprecated ones) that are not globally reachable although
#: ``ipaddress`` calls them global on some Python versions; checked after ``is_private`` & co.
SPECIAL_PURPOSE: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("fec0::/10", "site-local"),  # deprecated site-local (RFC 3879)
        ("192.88.99.0/24", "special-purpose"),  # deprecated 6to4 relay anycast (RFC 7526)
        ("192.0.0.0/24", "special-purpose"),  # IETF protocol assignments (192.0.0.8 dummy, DS-Lite, ...)
        ("0.0.0.0/8", "special-purpose"),  # "this network"
        ("192.0.2.0/24", "special-purpose"),  # documentation (TEST-NET-1)
        ("198.51.100.0/24", "special-purpose"),  # documentation (TEST-NET-2)
        ("203.0.113.0/24", "special-purpose"),  # documentation (TEST-NET-3)
        ("198.18.0.0/15", "special-purpose"),  # benchmarking
        ("240.0.0.0/4", "special-purpose"),  # reserved, limited broadcast
        ("100::/64", "special-purpose"),  # discard-only
        ("100:0:0:1::/64", "special-purpose"),  # dummy prefix (RFC 9780)
        ("64:ff9b:1::/48", "special-purpose"),  # local-use IPv4/IPv6 translation (RFC 8215)
        ("2001:2::/48", "special-purpose"),  # benchmarking
        ("2001:10::/28", "special-purpose"),  # deprecated ORCHID
        ("2001:db8::/32", "special-purpose"),  # documentation
        ("3fff::/20", "special-purpose"),  # documentation (RFC 9637)
        ("5f00::/16", "special-purpose"),  # SRv6 SIDs (RFC 9602)
        ("fc00::/7", "special-purpose"),  # unique local
    )
)


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo client, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refused_address(address: str) -> str | None:
    """Why an address is off-limits, or None when it is globally routable (checked on the IPv4
    address it wraps too, so no tunnelled form of loopback or private space gets through)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%")[0])
    candidates = [ip]
    inner = embedded_ipv4(ip)
    if inner is not None:
        candidates.append(inner)
    for candidate in candidates:
        for attribute in (
            "is_loopback",
            "is_private",
            "is_link_local",
            "is_reserved",
            "is_multicast",
            "is_unspecified",
        ):
            if getattr(candidate, attribute):
                return attribute.removeprefix("is_").replace("_", "-")
        for network, reason in SPECIAL_PURPOSE:
            if candidate.version == network.version and candidate in network:
                return reason
        if not candidate.is_global:  # e.g. 100.64.0.0/10 (shared space, cloud metadata at .200)
            return "non-global"
    return None


#: Content encodings decoded here (gzip and deflate are advertised in Accept-Encoding), as zlib ``wbits``.
ENCODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}
MAX_STACKED_ENCODINGS = 2
#: The most one decoding step may produce, whatever the input (a bomb inflates 1000x per layer).
DECODE_STEP = 64 * 1024


class _Layer:
    """One gzip/deflate layer, decoded at most `DECODE_STEP` bytes per zlib call."""

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._first = True
        self._zlib = zlib.decompressobj(ENCODINGS[encoding])

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._zlib.decompress(data, DECODE_STEP)
            except zlib.error:
                if not (self._deflate and self._first):
                    raise
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # "deflate" sent raw, as httpx allows
                self._first = False
                continue
            self._first = False
            data = self._zlib.unconsumed_tail
            if out:
                yield out
            # done when this input is used up; bytes after the end of the stream are ignored, as httpx does
            if self._zlib.eof or not (out or data):
                return


class BoundedDecoder:
    """Decodes a body with stacked content encodings lazily: each piece it yields is at most
    `DECODE_STEP` bytes, so the caller can stop as soon as its count passes a cap."""

    def __init__(self, encodings: list[str]) -> None:
        self._layers = [_Layer(encoding) for encoding in reversed(encodings)]  # undo the last one first

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        return self._through(0, chunk)

    def _through(self, layer: int, data: bytes) -> Iterator[bytes]:
        if layer == len(self._layers):
            if data:
                yield data
            return
        for piece in self._layers[layer].pieces(data):
            yield from self._through(layer + 1, piece)


def content_encodings(url: str, headers: httpx.Headers) -> list[str]:
    """The encodings to undo (identity dropped), or `FetchError` for one not decoded here or too many."""
    values = (v.strip().lower() for v in headers.get_list("Content-Encoding", split_commas=True))
    encodings = [v for v in values if v and v != "identity"]
    for encoding in encodings:
        if encoding not in ENCODINGS:
            raise FetchError(f"refused {url}: content encoding {encoding} is not supported")
    if len(encodings) > MAX_STACKED_ENCODINGS:
        raise FetchError(
            f"refused {url}: {len(encodings)} stacked content encodings (at most {MAX_STACKED_ENCODINGS})"
        )
    return encodings


class PageDeadline:
    """One wall-clock deadline for a whole page fetch. `timeout` cuts each hop's timeouts to the time
    left; `trace` (an httpx ``trace`` extension) keeps a duplicate of every connection's socket, and a
    timer shuts those down when the deadline passes, so a read blocked on a server that drips headers
    or body one byte at a time returns at once. Use it as a context manager: leaving it cancels the
    timer and closes the duplicates (the connections themselves are closed by httpx)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._done = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> PageDeadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def left(self) -> float:
        return self.end - time.monotonic()

    def passed(self) -> bool:
        return self._expired or self.left() <= 0

    def error(self, url: str) -> FetchError:
        return FetchError(f"{url} took longer than the {self.seconds} s page deadline")

    def check(self, url: str) -> None:
        if self.passed():
            raise self.error(url)

    def timeout(self, per_operation: float) -> httpx.Timeout:
        return httpx.Timeout(max(min(per_operation, self.left()), 0.001))

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if not event.endswith("connect_tcp.complete"):
            return
        sock = info["return_value"].get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            return
        duplicate = sock.dup()  # survives the original being wrapped for TLS (which detaches it)
        with self._lock:
            if self._done:
                duplicate.close()
                return
            self._sockets.append(duplicate)
            if self._expired:
                _shutdown(duplicate)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut down by the peer
        sock.shutdown(socket.SHUT_RDWR)


def resolve_within(resolver: Resolver, host: str, deadline: PageDeadline, url: str) -> list[str]:
    """``resolver(host)`` bounded by the deadline (run in a daemon thread: a DNS lookup cannot be
    interrupted, but it ends on its own at the resolver's timeout and then holds nothing)."""
    answer: list[list[str]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(resolver(host))
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(max(deadline.left(), 0))
    if failure:
        raise failure[0]
    if not answer:
        raise deadline.error(url)
    return answer[0]


class HttpPageFetcher:
    def __init__(
        self,
        settings: FetchSettings,
        *,
        resolver: Resolver = resolve_host,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._resolver = resolver
        self._allowed = {h.lower() for h in settings.allow_hosts}
        self._client = httpx.Client(
            timeout=settings.timeout_s,
            follow_redirects=False,
            transport=transport,
            # no kept-alive connections: every hop connects anew, so PageDeadline sees its socket
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": "sounding/0.1 (research agent)", "Accept-Encoding": "gzip, deflate"},
        )

    def check_url(self, url: str, *, deadline: PageDeadline | None = None) -> str | None:
        """Raise `FetchError` unless the URL is well-formed http(s) and its host resolves only to
        allowed addresses; returns the checked address to connect to (None for an allowed host,
        resolved as usual). With a deadline, the lookup must answer before it passes."""
        parts = split_url(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"refused {url}: only http and https URLs are fetched")
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchError(f"refused {url}: no host")
        if host in self._allowed:
            return None
        if deadline is None:
            addresses = self._resolver(host)
        else:
            addresses = resolve_within(self._resolver, host, deadline, url)
        if not addresses:
            raise FetchError(f"refused {url}: {host} resolves to no address")
        for address in addresses:
            reason = refused_address(address)
            if reason is not None:
                raise FetchError(
                    f"refused {url}: {host} resolves to {reason} address {address} "
                    "(allow it with fetch.allow_hosts if this is intended)"
                )
        return addresses[0]

    def _request(self, url: str, address: str | None, deadline: PageDeadline) -> httpx.Request:
        """A GET that connects to ``address`` (the one checked) while naming the URL's host; its
        timeouts are cut to the time the page deadline leaves."""
        timeout = deadline.timeout(self.settings.timeout_s)
        extensions: dict[str, Any] = {"trace": deadline.trace}
        if address is None:
            return self._client.build_request("GET", url, timeout=timeout, extensions=extensions)
        parts = urlsplit(url)
        literal = f"[{address}]" if ":" in address else address
        netloc = literal + (f":{parts.port}" if parts.port else "")
        pinned = parts._replace(netloc=netloc).geturl()
        host_header = parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else netloc
        extensions["sni_hostname"] = parts.hostname
        return self._client.build_request(
            "GET", pinned, headers={"Host": host_header}, timeout=timeout, extensions=extensions
        )

    def _read_body(self, response: httpx.Response, url: str, deadline: PageDeadline) -> bytes:
        """The decoded body, refused as soon as the raw or the decoded bytes pass the cap."""
        cap = self.settings.max_bytes
        chunks: Iterable[bytes]
        if response.is_stream_consumed:  # built in memory (a mock transport): httpx decoded it already
            decoder, chunks = BoundedDecoder([]), [response.content]
        else:
            decoder, chunks = BoundedDecoder(content_encodings(url, response.headers)), response.iter_raw()
        raw = 0
        body = bytearray()
        for chunk in chunks:
            raw += len(chunk)
            if raw > cap:
                raise FetchError(f"refused {url}: larger than the {cap}-byte cap")
            try:
                for piece in decoder.decode(chunk):
                    body.extend(piece)
                    if len(body) > cap:
                        raise FetchError(f"refused {url}: larger than the {cap}-byte cap (decoded)")
            except zlib.error as exc:
                raise FetchError(f"cannot fetch {url}: its compressed body is corrupt ({exc})") from exc
            deadline.check(url)
        deadline.check(url)  # a connection shut down at the deadline may look like a body's end
        return bytes(body)

    def fetch(self, url: str) -> Page:
        with PageDeadline(self.settings.total_timeout_s) as deadline:
            final, text, ctype = self._fetch_text(url, deadline)
        return extract_page(final, text, ctype)

    def _fetch_text(self, url: str, deadline: PageDeadline) -> tuple[str, str, str]:
        """Follow redirects to the page; its final URL, text and content type."""
        current = url
        for _ in range(self.settings.max_redirects + 1):
            deadline.check(current)
            address = self.check_url(current, deadline=deadline)
            try:
                response = self._client.send(self._request(current, address, deadline), stream=True)
                try:
                    if response.is_redirect:
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(f"{current} redirected without a Location header")
                        try:
                            current = urljoin(current, location)
                        except ValueError as exc:
                            raise FetchError(
                                f"refused {current}: it redirected to a malformed URL {location!r}"
                            ) from exc
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"{current} answered HTTP {response.status_code}")
                    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    if ctype not in self.settings.content_types:
                        raise FetchError(
                            f"refused {current}: content type {ctype or 'missing'} is not allowed"
                        )
                    body = self._read_body(response, current, deadline)
                    text = body.decode(response.encoding or "utf-8", errors="replace")
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                if deadline.passed():
                    raise deadline.error(current) from exc
                raise FetchError(f"{current} timed out after {self.settings.timeout_s} s") from exc
            except httpx.HTTPError as exc:
                if deadline.passed():  # the deadline shut the connection down mid-read
                    raise deadline.error(current) from exc
                raise FetchError(f"cannot fetch {current}: {exc}") from exc
            except httpx.InvalidURL as exc:  # not an HTTPError
                raise FetchError(f"refused {current!r}: malformed URL ({exc})") from exc
            return current, text, ctype
        raise FetchError(f"{url}: more than {self.settings.max_redirects} redirects")


def extract_page(url: str, body: str, content_type: str = "text/html") -> Page:
    """Main text and title of a page (scripts, navigation and boilerplate removed)."""
    if content_type == "text/plain":
        return Page(url=url, title=url, text=body.strip())
    import trafilatura

    extracted = trafilatura.bare_extraction(body, url=url, with_metadata=True, include_comments=False)
    if extracted is None:
        raise FetchError(f"{url}: no main text could be extracted")
    data = extracted.as_dict() if hasattr(extracted, "as_dict") else dict(extracted)
    text = (data.get("text") or "").strip()
    if not text:
        raise FetchError(f"{url}: no main text could be extracted")
    return Page(url=url, title=str(data.get("title") or url), text=text)
