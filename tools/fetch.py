"""Fetch a web page safely and extract its main text (trafilatura).

Guards: http(s) only, a read timeout and a total deadline per page (a server dripping one byte at a
time cannot hold a run), a byte cap (streamed, aborted past the cap), a content-type allow-list, a
redirect limit with every hop re-checked, and an SSRF guard: the host is resolved once, every
address must be globally routable (``ip.is_global``, after unwrapping IPv4 carried in IPv4-mapped,
6to4, Teredo and NAT64 addresses, so ``2002:7f00:1::1`` is loopback and 100.64.0.0/10 is refused),
and the connection goes to the address that was checked (the URL's host is kept for the Host header
and TLS SNI/verification), so a name whose answer changes between check and connect (DNS
rebinding) cannot reach a private address. Hosts in ``fetch.allow_hosts`` skip the address check.
Page text is untrusted data: `Page.quoted` renders it as a quote so nothing in it can pass for an
instruction to the model.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urljoin, urlsplit

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
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from exc


NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
        if not candidate.is_global:  # e.g. 100.64.0.0/10 (shared space, cloud metadata at .200)
            return "non-global"
    return None


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
            headers={"User-Agent": "sounding/0.1 (research agent)"},
        )

    def check_url(self, url: str) -> str | None:
        """Raise `FetchError` unless the URL is http(s) and its host resolves only to allowed addresses;
        returns the checked address to connect to (None for an allowed host, resolved as usual)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"refused {url}: only http and https URLs are fetched")
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchError(f"refused {url}: no host")
        if host in self._allowed:
            return None
        addresses = self._resolver(host)
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

    def _request(self, url: str, address: str | None) -> httpx.Request:
        """A GET that connects to ``address`` (the one checked) while naming the URL's host."""
        if address is None:
            return self._client.build_request("GET", url)
        parts = urlsplit(url)
        literal = f"[{address}]" if ":" in address else address
        netloc = literal + (f":{parts.port}" if parts.port else "")
        pinned = parts._replace(netloc=netloc).geturl()
        host_header = parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else netloc
        return self._client.build_request(
            "GET", pinned, headers={"Host": host_header}, extensions={"sni_hostname": parts.hostname}
        )

    def fetch(self, url: str) -> Page:
        current = url
        deadline = time.monotonic() + self.settings.total_timeout_s
        for _ in range(self.settings.max_redirects + 1):
            address = self.check_url(current)
            try:
                response = self._client.send(self._request(current, address), stream=True)
                try:
                    if response.is_redirect:
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(f"{current} redirected without a Location header")
                        current = urljoin(current, location)
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"{current} answered HTTP {response.status_code}")
                    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    if ctype not in self.settings.content_types:
                        raise FetchError(
                            f"refused {current}: content type {ctype or 'missing'} is not allowed"
                        )
                    body = bytearray()
                    for chunk in response.iter_bytes():
                        body.extend(chunk)
                        if len(body) > self.settings.max_bytes:
                            raise FetchError(
                                f"refused {current}: larger than the {self.settings.max_bytes}-byte cap"
                            )
                        if time.monotonic() > deadline:
                            raise FetchError(
                                f"{current} took longer than the {self.settings.total_timeout_s} s page deadline"
                            )
                    text = body.decode(response.encoding or "utf-8", errors="replace")
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                raise FetchError(f"{current} timed out after {self.settings.timeout_s} s") from exc
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot fetch {current}: {exc}") from exc
            return extract_page(current, text, ctype)
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
