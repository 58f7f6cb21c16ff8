"""Fetch a web page safely and extract its main text (trafilatura).

Guards: http(s) only, a timeout, a byte cap (streamed, aborted past the cap), a content-type
allow-list, a redirect limit with every hop re-checked, and an SSRF guard that resolves the host and
refuses loopback, private, link-local, reserved, multicast and unspecified addresses unless the host
is explicitly allowed in settings. Page text is untrusted data: `Page.quoted` renders it as a quote
so nothing in it can pass for an instruction to the model.
"""

from __future__ import annotations

import ipaddress
import socket
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


def refused_address(address: str) -> str | None:
    """Why an address is off-limits, or None when it is a public address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute in (
        "is_loopback",
        "is_private",
        "is_link_local",
        "is_reserved",
        "is_multicast",
        "is_unspecified",
    ):
        if getattr(ip, attribute):
            return attribute.removeprefix("is_").replace("_", "-")
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

    def check_url(self, url: str) -> None:
        """Raise `FetchError` unless the URL is http(s) and its host resolves only to allowed addresses."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"refused {url}: only http and https URLs are fetched")
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchError(f"refused {url}: no host")
        if host in self._allowed:
            return
        for address in self._resolver(host):
            reason = refused_address(address)
            if reason is not None:
                raise FetchError(
                    f"refused {url}: {host} resolves to {reason} address {address} "
                    "(allow it with fetch.allow_hosts if this is intended)"
                )

    def fetch(self, url: str) -> Page:
        current = url
        for _ in range(self.settings.max_redirects + 1):
            self.check_url(current)
            try:
                with self._client.stream("GET", current) as response:
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
                    text = body.decode(response.encoding or "utf-8", errors="replace")
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
