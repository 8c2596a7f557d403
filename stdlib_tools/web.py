"""`http_get`'s transport: httpx with a host allowlist, a total deadline and a size cap.

The allowlist is empty unless the user configures it (`[tools.http_get] allow_hosts` in
planfile.toml, or `--allow-host`), so a plan cannot reach the network by default.

The timeout (`[tools.http_get] timeout_s`, default 15 s) is a deadline for the whole
request: connecting, headers and the body. httpx's own timeouts apply to each read, so a
server sending a byte a second would otherwise hold the step for as long as it likes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from dsl.errors import ToolError

DEFAULT_TIMEOUT_S = 15.0
DEFAULT_MAX_BYTES = 2 * 1024 * 1024


class NetworkNotAllowed(ToolError, PermissionError):
    """The URL's host is not on the allowlist (or the scheme is not http/https)."""


class HttpTimeout(ToolError, TimeoutError):
    """The request passed its total deadline (a retry may help: the server may recover)."""

    transient = True


def host_allowed(host: str, allowlist: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


async def fetch(url: str, settings: Mapping[str, Any]) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkNotAllowed(f"`{url}` is not an http(s) URL")
    allowlist = list(settings.get("http_allowlist") or [])
    if not allowlist:
        raise NetworkNotAllowed(
            "http_get is off: no host is allowed. Allow hosts with `--allow-host HOST` or "
            "`allow_hosts = [...]` under `[tools.http_get]` in planfile.toml"
        )
    if not host_allowed(parts.hostname, allowlist):
        raise NetworkNotAllowed(
            f"host `{parts.hostname}` is not on the allowlist ({', '.join(allowlist)})"
        )
    timeout = float(settings.get("http_timeout_s") or DEFAULT_TIMEOUT_S)
    max_bytes = int(settings.get("http_max_bytes") or DEFAULT_MAX_BYTES)
    try:
        async with asyncio.timeout(timeout):
            return await _get(url, timeout, max_bytes)
    except TimeoutError:
        raise HttpTimeout(
            f"`{url}` did not finish within {timeout:g} s (the whole request, body included)"
        ) from None


async def _get(url: str, timeout: float, max_bytes: int) -> str:
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
        client.stream("GET", url, headers={"user-agent": "planfile"}) as response,
    ):
        if response.is_redirect:
            target = response.headers.get("location", "")
            raise NetworkNotAllowed(
                f"`{url}` redirects to `{target}`; fetch that URL if its host is allowed"
            )
        response.raise_for_status()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ValueError(f"response from `{url}` is over {max_bytes} bytes")
            chunks.append(chunk)
        encoding = response.encoding or "utf-8"
    return b"".join(chunks).decode(encoding, errors="replace")
