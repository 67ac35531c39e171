"""Hourly budgets of transcript requests, checked all before any is counted: a request refused by
one budget costs nothing in the others. Keys are normalised so trivial variations share a budget
(an IPv6 client's /64, an address's case and "+tag")."""

from __future__ import annotations

import hashlib
import ipaddress
import time

from django.core.cache import cache

from pivra.widget.ratelimit import RateLimited

HOUR = 3600
Bucket = tuple[str, int]  # (name, limit per hour)


def ip_key(ip: str) -> str:
    """An IPv4 address as is; an IPv6 one by its /64 (one subscriber usually holds a whole /64)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)


def recipient_key(address: str) -> str:
    """One mailbox, however it is spelled: the local part lower-cased without its "+tag"."""
    local, _, domain = address.rpartition("@")
    local = local.lower().split("+", 1)[0]
    return hashlib.sha256(f"{local}@{domain.lower()}".encode()).hexdigest()[:32]


def buckets_hit(buckets: list[Bucket]) -> None:
    """Read every bucket of this hour, refuse (429) if any is full, else count one in each."""
    window = int(time.time() // HOUR)
    keys = {name: f"rl:transcript:{name}:{window}" for name, _ in buckets}
    counts = cache.get_many(list(keys.values()))
    for name, limit in buckets:
        if int(counts.get(keys[name]) or 0) >= limit:
            retry_after = max(1, int(HOUR - time.time() % HOUR))
            exc = RateLimited(retry_after)
            exc.detail = f"Too many transcript requests. Try again in {max(1, (retry_after + 59) // 60)} min."
            raise exc
    for name, _ in buckets:
        key = keys[name]
        if not cache.add(key, 1, timeout=HOUR + 1):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=HOUR + 1)
