"""How much one sender may upload and one reader may download, counted in Redis (the cache) so every
server process shares the counts.

Files cost far more than messages, so on top of the message budget an upload spends a per-minute
count per visitor (or agent) and an hourly byte budget per visitor (or agent) and per IP; a download spends
an hourly byte budget per reader and per IP. A refusal is 429 ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from pivra.errors import DomainError
from pivra.widget.ratelimit import rate_limit_hit

HOUR = 3600


class TransferLimited(DomainError):
    status = 429

    def __init__(self, retry_after: int, detail: str) -> None:
        super().__init__("rate_limited", detail)
        self.retry_after = retry_after


def upload_budget_spend(*, sender_key: str, ip: str | None, size: int) -> None:
    """One upload of ``size`` bytes by ``sender_key`` ("v:<visitor>" or "u:<agent>") from ``ip``."""
    try:  # per sender only: many visitors may share one IP (an office); its byte budget bounds it
        rate_limit_hit(bucket=f"attach:n:{sender_key}", limit=settings.ATTACHMENT_UPLOADS_PER_MINUTE)
    except DomainError as exc:
        wait = int(getattr(exc, "retry_after", 60))
        raise TransferLimited(wait, f"You're sending files too fast. Try again in {wait} s.") from None
    limit = settings.ATTACHMENT_UPLOAD_MB_PER_HOUR * 1024 * 1024
    for key in _keys(sender_key, ip):
        _spend(f"attach:up:{key}", size=size, limit=limit, what="upload")


def download_budget_spend(*, reader_key: str, ip: str | None, size: int) -> None:
    """One download of ``size`` bytes by ``reader_key`` from ``ip``."""
    limit = settings.ATTACHMENT_DOWNLOAD_MB_PER_HOUR * 1024 * 1024
    for key in _keys(reader_key, ip):
        _spend(f"attach:down:{key}", size=size, limit=limit, what="download")


def _keys(actor: str, ip: str | None) -> list[str]:
    return [actor, f"ip:{ip}"] if ip else [actor]


def _spend(bucket: str, *, size: int, limit: int, what: str) -> None:
    window = int(time.time() // HOUR)
    key = f"rl:{bucket}:{window}"
    cache.add(key, 0, timeout=HOUR + 1)
    try:
        total = cache.incr(key, size)
    except ValueError:  # expired between add and incr
        cache.add(key, size, timeout=HOUR + 1)
        total = size
    if total > limit:
        wait = max(1, int(HOUR - time.time() % HOUR))
        minutes = max(1, wait // 60)
        raise TransferLimited(wait, f"Too many files to {what} this hour. Try again in {minutes} min.")
