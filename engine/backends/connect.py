"""Checking a Dask scheduler address before the backend's client connects to it.

The address's syntax is checked at once (a located error naming the flag), then the
service there is asked who it is within the connect timeout: `distributed.Client`
would hang on a service that is not a scheduler (an HTTP server), or allocate a frame
length read from its bytes (a MemoryError), and print its own tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.backends.dask import _HINT, ClusterUnavailable, _first_line


def checked_address(address: str) -> dict[str, Any]:
    """Refuse an address that cannot be a scheduler's at once (the flag and the fix),
    before any connection; its connection arguments (TLS settings) otherwise."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.security import Security

    where = f"--cluster {address!r} (or `[cluster] address`)"
    try:
        scheme, location = parse_address(address, strict=False)
        host, port = parse_host_port(location)
    except (ValueError, TypeError) as err:
        raise ClusterUnavailable(
            f"{where}: not a Dask scheduler address: {_first_line(err)}",
            hint="write it as tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786; IPv6: tcp://[::1]:8786)",
        ) from None
    if scheme not in ("tcp", "tls") or not host or not 0 < int(port) < 65536:
        raise ClusterUnavailable(
            f"{where}: not a Dask scheduler address"
            + (f" (scheme {scheme}:// is not supported)" if scheme not in ("tcp", "tls") else ""),
            hint="write it as tcp://HOST:PORT or tls://HOST:PORT (e.g. tcp://10.0.0.5:8786)",
        )
    try:
        args: dict[str, Any] = Security().get_connection_args("client")
    except Exception as err:  # unreadable certificate files named in Dask's config
        raise ClusterUnavailable(
            f"{where}: Dask's TLS settings are unusable: {_first_line(err)}",
            hint="fix distributed.comm.tls.* in Dask's config",
        ) from None
    if scheme == "tls" and args.get("ssl_context") is None:
        raise ClusterUnavailable(
            f"{where}: tls:// needs Dask's TLS settings, and none are configured",
            hint="set distributed.comm.tls.ca-file, .client.cert and .client.key in Dask's "
            "config (e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE=...), or use tcp://",
        )
    return args


def probe_scheduler(address: str, timeout_s: float, connection_args: dict[str, Any]) -> None:
    """Connect and ask the service at `address` who it is, all within `timeout_s`: a
    service that is not a Dask scheduler (an HTTP server, a proxy) would otherwise hang
    the client's handshake, or feed it a garbage frame length (a huge allocation)."""

    async def probe() -> object:
        from distributed.comm import connect

        # connect()'s own timeout a little earlier: its error says more (refused...).
        async with asyncio.timeout(timeout_s):
            comm = await connect(
                address, timeout=max(timeout_s - 0.5, timeout_s * 0.75), **connection_args
            )
            try:
                await comm.write({"op": "identity", "reply": True})
                return await comm.read()
            finally:
                comm.abort()

    def run() -> object:
        logger = logging.getLogger("distributed")
        level = logger.level
        logger.setLevel(logging.CRITICAL)  # the expected failure is reported once, below
        try:
            return asyncio.run(probe())
        finally:
            logger.setLevel(level)

    # In a thread of its own: the caller may be inside a running event loop.
    with ThreadPoolExecutor(1, thread_name_prefix="planfile-dask-probe") as pool:
        try:
            reply = pool.submit(run).result()
        except Exception as err:  # anything here means "not reachable"
            if isinstance(err, TimeoutError):
                why = "no Dask answer (is a Dask scheduler listening there?)"
            elif isinstance(err, MemoryError):  # a frame length read from non-Dask bytes
                why = "what answers there does not speak Dask's protocol"
            else:
                why = _first_line(err)
            raise ClusterUnavailable(
                f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s: {why}",
                hint=_HINT,
            ) from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise ClusterUnavailable(
            f"the service at {address} is not a Dask scheduler "
            f"(it answered {type(reply).__name__}, not a scheduler's identity)",
            hint=_HINT,
        )
