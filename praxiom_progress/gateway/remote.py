"""Who is on the other end: the peer's address, or, behind a trusted proxy, the client that
proxy names in `X-Forwarded-For` (GATEWAY_TRUSTED_PROXIES). Logs and per-address limits use
it, so behind nginx they see the real client, not nginx."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from aiohttp import web

Network = IPv4Network | IPv6Network


class ClientAddresses:
    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted: tuple[Network, ...] = tuple(ip_network(t, strict=False) for t in trusted)

    def of(self, request: web.Request) -> str:
        """The client's address: walking `X-Forwarded-For` from the right (the hop nearest
        us) while each hop is a trusted proxy, the first address that is not one. A header
        from an untrusted peer is ignored: anyone can write it."""
        peer = request.remote or ""
        if not self._trusted or not self._is_trusted(peer):
            return peer
        hops = [
            hop.strip()
            for header in request.headers.getall("X-Forwarded-For", [])
            for hop in header.split(",")
        ]
        client = peer
        for hop in reversed(hops):
            if _address(hop) is None:
                break  # garbage in the chain: trust nothing further left
            client = hop
            if not self._is_trusted(hop):
                break
        return client

    def _is_trusted(self, address: str) -> bool:
        parsed = _address(address)
        return parsed is not None and any(parsed in network for network in self._trusted)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None
