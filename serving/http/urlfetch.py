"""Fetching an image by URL without letting callers reach the server's own network.

Every connection, the first and the one after each redirect, goes through :class:`GuardedBackend`:
it resolves the host itself, refuses the connection unless every address is public (private,
loopback, link-local (cloud metadata at 169.254.169.254 included), multicast, reserved and unspecified
addresses are refused; so are IPv6 forms that embed one of those), and then connects to the address
it checked, so a second DNS answer cannot swap in another one. Whatever goes wrong, the caller sees
one message (:data:`FETCH_FAILED`): a refused address, a closed port, a timeout and an HTTP error
look alike, so the server cannot be used to scan ports. The whole fetch (redirects, headers and body)
has one deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

from serving.http.errors import ApiError, TooLarge

logger = logging.getLogger(__name__)

FETCH_FAILED = "could not fetch the image URL (unreachable, refused by this server's address policy, too slow, " \
               "or not answered with HTTP 200)"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(httpcore.ConnectError):
    """The host resolved to an address the policy refuses (a connect error to httpx)."""


def _embedded(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address (else the address itself)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a fetch may connect to: public ones, and those in ``allowed`` (CIDR strings)."""

    allowed: tuple[str, ...] = ()

    def permits(self, address: IPAddress) -> bool:
        inner = _embedded(address)
        if any(inner in ipaddress.ip_network(net, strict=False) for net in self.allowed):
            return True
        return inner.is_global and address.is_global and not inner.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (numeric forms such as ``0x7f000001`` included)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check in front of every TCP connect."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy, self._inner = policy, AutoBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        parsed = [ipaddress.ip_address(a.split("%")[0]) for a in addresses]
        refused = [str(a) for a in parsed if not self._policy.permits(a)]
        if refused or not parsed:
            raise RefusedAddress(f"{host!r} resolves to refused address(es) {refused}")
        return await self._inner.connect_tcp(addresses[0], port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(policy: AddressPolicy) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections all pass :class:`GuardedBackend`."""
    transport = httpx.AsyncHTTPTransport(retries=0)
    transport._pool = httpcore.AsyncConnectionPool(network_backend=GuardedBackend(policy), retries=0)
    return transport


@dataclass(frozen=True)
class UrlFetcher:
    """GET one image: ``max_bytes`` at most, ``deadline_s`` for everything, at most ``max_redirects``."""

    max_bytes: int
    deadline_s: float
    policy: AddressPolicy = AddressPolicy()
    max_redirects: int = 3

    async def fetch(self, url: str) -> bytes:
        """The body at ``url``; :class:`TooLarge` over the cap, else one uniform 400 for every failure."""
        try:
            return await asyncio.wait_for(self._download(url), timeout=self.deadline_s)
        except TooLarge:
            raise
        except (TimeoutError, httpx.HTTPError, httpcore.ConnectError, _NotOk, OSError, ValueError) as exc:
            logger.info("image URL fetch refused or failed: %s", exc)  # the reason stays in the log
            raise ApiError(400, FETCH_FAILED, "url_fetch_failed") from None

    async def _download(self, url: str) -> bytes:
        async with httpx.AsyncClient(transport=guarded_transport(self.policy), follow_redirects=True,
                                     max_redirects=self.max_redirects, trust_env=False,
                                     timeout=httpx.Timeout(self.deadline_s)) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise _NotOk(f"HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise TooLarge(f"the image at the URL is over the limit of {self.max_bytes} bytes")
            chunks, total = [], 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > self.max_bytes:
                    raise TooLarge(f"the image at the URL is over the limit of {self.max_bytes} bytes")
                chunks.append(chunk)
        return b"".join(chunks)


class _NotOk(Exception):
    """The URL answered with a status other than 200."""
