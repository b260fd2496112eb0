"""Who the client of a request is: the TCP peer, or the address a trusted reverse proxy forwarded. One rule for
every place that decides by address (/metrics for loopback clients, the logins' rate limit)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import Request

from lorastudio.errors import Invalid

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Client:
    """The client's address (None when the server did not say), and whether the request surely comes from this
    machine: a loopback address reached directly or through proxies that are all on this machine."""

    address: str | None
    is_loopback: bool


def client_of(request: Request, trusted_proxies: str) -> Client:
    """The client of a request, believing X-Forwarded-For (else Forwarded) only from the trusted proxies."""
    peer = request.client.host if request.client else None
    chain = _forwarded_chain(request)
    if not chain:
        return Client(peer, _loopback(peer))
    trusted = trusted_networks(trusted_proxies)
    if not _trusted(peer, trusted):
        # Forwarded by a peer that is no trusted proxy: its headers are not believed, and the request may come
        # from anywhere (a proxy on this machine that is not listed would otherwise make everyone look local).
        return Client(peer, False)
    # Each proxy appends the address it was connected from: walk back from the right while the hop that
    # wrote the entry is trusted; the first entry that a stranger could have written is the client.
    address, local = peer, True
    for hop in reversed(chain):
        if not _trusted(address, trusted):
            break
        local = local and _loopback(address)  # a remote proxy's 127.0.0.1 is that machine, not this one
        address = hop
    return Client(address, local and _loopback(address))


def client_host(request: Request, trusted_proxies: str) -> str:
    """The client's address as text, for keys such as a rate limit's ("unknown" when the server did not say)."""
    return client_of(request, trusted_proxies).address or "unknown"


def _forwarded_chain(request: Request) -> list[str]:
    xff = ",".join(request.headers.getlist("x-forwarded-for"))
    if xff.strip():
        return [_bare(part) for part in xff.split(",") if part.strip()]
    hops = []
    for element in ",".join(request.headers.getlist("forwarded")).split(","):
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            if key.strip().lower() == "for":
                hops.append(_bare(value))
    return hops


def _bare(value: str) -> str:
    """An address without quotes, IPv6 brackets or port ('"[2001:db8::1]:4711"' -> '2001:db8::1')."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        return value.split(":", 1)[0]
    return value


def _ip(value: str | None) -> Address | None:
    try:
        return ipaddress.ip_address(value) if value else None
    except ValueError:
        return None


@lru_cache(maxsize=16)
def trusted_networks(trusted_proxies: str) -> tuple[Network, ...]:
    """The addresses and networks (CIDR) of the trusted_proxies setting; Invalid names the word that is neither."""
    out = []
    for word in trusted_proxies.replace(" ", ",").split(","):
        if not word.strip():
            continue
        try:
            out.append(ipaddress.ip_network(word.strip(), strict=False))
        except ValueError as exc:
            raise Invalid(
                f"LORASTUDIO_TRUSTED_PROXIES: {word.strip()!r} is not an IP address or network (e.g. 127.0.0.1, "
                "10.0.0.0/8); list the reverse proxies' addresses, separated by commas"
            ) from exc
    return tuple(out)


def _loopback(address: str | None) -> bool:
    ip = _ip(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip is not None and ip.is_loopback


def _trusted(address: str | None, networks: tuple[Network, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip.version == net.version and ip in net for net in networks)
