"""The Host allow-list: the guard against DNS rebinding.

A token-less server on 127.0.0.1 trusts that only its user's programs reach it. A web page can break
that trust without any cross-site request: its own name is made to resolve to 127.0.0.1, after which
the browser treats calls to the server as same-origin (so :class:`~serving.http.guards.SameOriginGuard`
lets them through) and lets the page read the answers. The one header the page cannot choose is
``Host``: it still names the attacker's domain. :class:`HostAllowList` answers such requests with
HTTP 421 before any route runs.

``sam3-agent serve`` turns it on by itself when it listens on a loopback address (see
:func:`default_allowed_hosts`); a server on a public interface sets ``--allowed-host`` to the names its
clients use.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.http.errors import error_response

#: The names a loopback server answers to when nothing else is configured.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_name(header: str) -> str:
    """The name part of a ``Host`` header, lower-cased, without port or IPv6 brackets.

    >>> host_name("LocalHost:8000"), host_name("[::1]:8000"), host_name("example.org")
    ('localhost', '::1', 'example.org')
    """
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    name, _, _ = header.partition(":")
    return name.rstrip(".")


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_address: str) -> tuple[str, ...]:
    """The allow-list a server bound to ``bind_address`` gets when none is given: the loopback names for
    a loopback address (plus the address itself), none (no check) for any other address."""
    if not is_loopback(bind_address):
        return ()
    return tuple(dict.fromkeys((*LOOPBACK_NAMES, host_name(bind_address))))


def host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``name`` (from :func:`host_name`) matches an entry: ``*`` (any), ``*.example.org`` (any
    sub-domain of example.org) or an exact name."""
    for entry in allowed:
        entry = host_name(entry) if not entry.startswith("*.") else entry.lower()
        if entry == "*" or entry == name or (entry.startswith("*.") and name.endswith(entry[1:])):
            return True
    return False


class HostAllowList:
    """HTTP 421 for a request whose ``Host`` header names none of ``allowed`` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        if not allowed:
            raise ValueError("HostAllowList needs at least one allowed host ('*' allows any)")
        self.app, self.allowed = app, tuple(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if not host_allowed(host_name(header), self.allowed):
                message = (f"this server does not answer to the host name {host_name(header)[:100]!r} "
                           f"(allowed: {', '.join(self.allowed)}); start it with --allowed-host NAME to add one")
                await error_response(421, message, "wrong_host")(scope, receive, send)
                return
        await self.app(scope, receive, send)
