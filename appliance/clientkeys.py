"""Who "one client" is, for the per-client limits and quotas.

A client is its address; an IPv6 client is its /64, because one host is handed a whole
/64 and can send from any address in it (keying by the full address would give it 2^64
quotas). The app keys its quotas with :func:`client_key`; the proxy keys its connection
and request-rate limits with the nginx ``map`` made by :func:`nginx_client_map`, which
does the same on the text nginx prints for an address.

Which address is the client's is the proxy's business: its own peer, or, from a trusted
front proxy only (the ``trusted_proxies`` setting), the last untrusted address of
``X-Forwarded-For`` (nginx's realip module).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IPV6_PREFIX = 64
_HEX = "[0-9a-f]{1,4}"


@lru_cache(maxsize=4096)  # asked on every submission; parsing an address is ~10 us
def client_key(address: str) -> str:
    """The key of the client at ``address``: an IPv4 address as it is, an IPv6 address as
    its /64 (``2001:db8:1:2::/64``), an IPv4-mapped IPv6 address as the IPv4 one; text
    that is no address (a Unix socket's peer, say) as it is."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv4Address):
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network(f"{parsed}/{IPV6_PREFIX}", strict=False))


def _groups(count: int) -> str:
    return ":".join([_HEX] * count)


def nginx_client_patterns() -> list[tuple[str, str]]:
    """(regex, key) pairs for nginx's canonical IPv6 text (RFC 5952: lower case, no
    leading zeros, the longest run of zero groups written ``::``), each key naming the
    address's first four groups: every address of one /64 gets the same key, whatever
    part ``::`` stands for. Any other text (IPv4, ``::ffff:1.2.3.4``) matches none."""
    patterns = [(f"^({_groups(4)}):[0-9a-f:]*$", "$1/64")]  # the first four written out
    for before in range(4):  # groups before "::", fewer than four
        for after in range(8 - before):  # groups after it; "::" stands for the rest
            zeros = 8 - before - after
            taken = max(0, 4 - before - zeros)  # groups after "::" that are in the /64
            head = f"({_groups(before)})" if before else ""
            tail = ""
            if after:
                tail = f"({_groups(taken)})" if taken else ""
                rest = after - taken
                tail += (":" if taken and rest else "") + _groups(rest)
            parts = (["$1"] if before else []) + ["0"] * min(zeros, 4 - before)
            if taken:
                parts.append("$2" if before else "$1")
            patterns.append((f"^{head}::{tail}$", ":".join(parts) + "/64"))
    return patterns


def nginx_client_map(source: str = "$remote_addr", target: str = "$appliance_client") -> str:
    """The nginx ``map`` from ``source`` to the client's key: its /64 for IPv6, else the
    binary address (4 bytes for IPv4, as nginx's own ``$binary_remote_addr``)."""
    lines = [f"    map {source} {target} {{", "        default $binary_remote_addr;"]
    lines += [f'        "~{regex}" "{key}";' for regex, key in nginx_client_patterns()]
    lines.append("    }")
    return "\n".join(lines)
