"""Visitor tokens: signed, timestamped, scoped to one visitor of one chatbot. Never put in URLs."""

from __future__ import annotations

from django.conf import settings
from django.core import signing

from conversations.models import Visitor

_SALT = "pivra.widget.visitor"


def visitor_token(visitor: Visitor) -> str:
    return signing.dumps({"v": str(visitor.public_id), "c": visitor.chatbot_id}, salt=_SALT)


def visitor_from_token(token: str | None, *, chatbot_id: int | None = None) -> Visitor | None:
    """The visitor a token names, or None when it is missing, forged, expired or of another chatbot."""
    if not token or len(token) > 500:
        return None
    try:
        claims = signing.loads(token, salt=_SALT, max_age=settings.VISITOR_TOKEN_MAX_AGE)
    except signing.BadSignature:  # also covers SignatureExpired
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("c"), int) or not isinstance(claims.get("v"), str):
        return None
    if chatbot_id is not None and claims["c"] != chatbot_id:
        return None
    return (
        Visitor.objects.select_related("chatbot__workspace")
        .filter(public_id=claims["v"], chatbot_id=claims["c"])
        .first()
    )
