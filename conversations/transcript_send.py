"""Sending a conversation's transcript by email, asked for by its visitor (on the resolved screen) or
by an agent of its workspace: the address checked, the request rate-limited, the email built and sent
by a Celery task on the ``deliveries`` queue (enqueued by name once the request is done)."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Literal

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.utils import translation

from chatbots.languages import supported_language
from conversations.models import Conversation
from conversations.transcript import transcript_render
from conversations.transcript_limits import Bucket, buckets_hit, ip_key, recipient_key
from handoff.models import Handoff
from pivra.errors import Conflict, DomainError
from pivra.widget.ratelimit import RateLimited

logger = logging.getLogger(__name__)

TASK_NAME = "conversations.tasks.send_transcript"
EMAIL_MAX = 254  # RFC 5321's limit on a forward path
# The API schema's pattern, and a second check after Django's validator on every path (HTTP and
# socket): Django alone accepts a@localhost and a@[127.0.0.1]; this pattern wants a dotted domain
# with a top-level domain of letters and no quoted local part or IP literal.
_ATOM = r"[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$"
_EMAIL_RE = re.compile(EMAIL_PATTERN)
HOUR = 3600
# Budgets per hour (conversations/transcript_limits.py). The conversation's is split by side, so
# agents cannot use up the visitor's sends; above them, per chatbot, per workspace and overall.
PER_CONVERSATION = 3
PER_RECIPIENT = 5
PER_VISITOR = 5
PER_IP = 10
PER_AGENT = 30
PER_CHATBOT = 20
PER_WORKSPACE = 100
# A visitor's conversation goes to one address only: the first one it was sent to (for a day).
RECIPIENT_LOCK_SECONDS = 86_400
# A task redelivered after its email went (a worker killed before its ack) finds this mark and stops.
SENT_MEMORY_SECONDS = 86_400
# Held while one worker sends; a redelivery finding it retries later (the first may still succeed).
SENDING_SECONDS = 120


class StillSending(Exception):
    """Another worker is sending this request's email right now: retry later, never send twice."""


def clean_transcript_email(email: str | None) -> str:
    """The address as typed, trimmed, checked with Django's validator and ``EMAIL_PATTERN`` (one
    address on a public-looking domain, no header tricks)."""
    value = (email or "").strip()
    try:
        if not value or len(value) > EMAIL_MAX or not _EMAIL_RE.fullmatch(value):
            raise ValidationError("bad address")
        validate_email(value)
    except ValidationError:
        raise DomainError("invalid_email", "Please enter a valid email address.", status=422) from None
    return value


def _visitor_checks(conversation: Conversation) -> None:
    if not conversation.chatbot.transcript_emails:
        raise DomainError("transcripts_off", "This chat does not send transcripts by email.", status=403)
    # A conversation closed because the visitor asked for a person again is not one they saw resolved.
    superseded = Handoff.objects.filter(conversation_id=conversation.pk, resolve_reason="superseded").exists()
    if superseded or conversation.status != Conversation.Status.CLOSED:
        raise Conflict("not_resolved", "You can ask for the transcript once the conversation is resolved.")


def transcript_request(
    *,
    conversation: Conversation,
    email: str,
    by: Literal["visitor", "agent"],
    visitor_key: str | None = None,
    user_id: int | None = None,
    ip: str | None = None,
) -> str:
    """Check and count the request, then queue one email of the transcript to ``email`` (after the
    caller's transaction commits). Returns the address. The caller has scoped ``conversation`` to its
    visitor, or to an agent of its workspace; a visitor may ask only once it is resolved (not
    superseded by a newer request), to one address per conversation."""
    address = clean_transcript_email(email)
    workspace_id = conversation.chatbot.workspace_id
    if by == "visitor":
        _visitor_checks(conversation)
    buckets: list[Bucket] = []
    if by == "visitor":
        if visitor_key:
            buckets.append((f"v:{visitor_key}", PER_VISITOR))
        if ip:  # agents are not charged per IP: a team behind one NAT would share it
            buckets.append((f"ip:{ip_key(ip)}", PER_IP))
        buckets.append((f"c:v:{conversation.pk}", PER_CONVERSATION))
    else:
        if user_id is not None:
            buckets.append((f"u:{user_id}", PER_AGENT))
        buckets.append((f"c:a:{conversation.pk}", PER_CONVERSATION))
    buckets += [
        (f"bot:{conversation.chatbot_id}", PER_CHATBOT),
        (f"ws:{workspace_id}", PER_WORKSPACE),
        ("all", settings.TRANSCRIPTS_PER_HOUR),
        # Visitors share one budget per mailbox (a stranger's address is flooded from no widget);
        # agents have one per workspace, so another tenant's agents cannot use theirs up.
        (
            f"to:{recipient_key(address)}" if by == "visitor" else f"to:{workspace_id}:{recipient_key(address)}",
            PER_RECIPIENT,
        ),
    ]
    # A visitor's sends of one conversation all go to the first address (no spraying of strangers).
    lock = f"transcript:to:{conversation.pk}" if by == "visitor" else None
    locked = bool(lock) and cache.add(lock, recipient_key(address), timeout=RECIPIENT_LOCK_SECONDS)
    if lock and not locked and cache.get(lock) != recipient_key(address):
        raise Conflict(
            "transcript_address_locked", "This conversation's transcript can only go to the address used first."
        )
    try:
        buckets_hit(buckets)
    except RateLimited:
        if locked and lock:
            cache.delete(lock)  # refused: the address was not used
        raise
    request_id = str(uuid.uuid4())
    conversation_id = conversation.pk
    transaction.on_commit(
        lambda: current_app.send_task(TASK_NAME, args=[conversation_id, address, request_id], queue="deliveries")
    )
    logger.info("transcript of conversation %s requested by %s", conversation_id, by)
    return address


def transcript_language(*, conversation: Conversation) -> str:
    """The language the visitor chatted in: the conversation's, else its chatbot's default, else
    the site's (an unknown or retired code falls back the same way)."""
    for code in (conversation.language, conversation.chatbot.default_language):
        supported = supported_language(code)
        if supported:
            return supported
    return settings.LANGUAGE_CODE


def transcript_email(*, conversation: Conversation, to: str) -> EmailMultiAlternatives:
    """The email: the operator's From address (never a tenant's), text and HTML parts, in the
    conversation's language (it goes to the visitor, whoever asked for it)."""
    language = transcript_language(conversation=conversation)
    with translation.override(language):
        subject, text, html = transcript_render(conversation=conversation)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers={"Content-Language": language},
    )
    message.attach_alternative(html, "text/html")
    return message


def transcript_deliver(*, conversation_id: int, email: str, request_id: str) -> bool:
    """Send one requested transcript; False when the conversation is gone or it was already sent.
    Raises StillSending while another worker holds this request's "sending" mark."""
    conversation = Conversation.objects.select_related("chatbot").filter(pk=conversation_id).first()
    if conversation is None:
        return False
    sent, sending = f"transcript:sent:{request_id}", f"transcript:sending:{request_id}"
    if cache.get(sent):
        return False
    if not cache.add(sending, 1, timeout=SENDING_SECONDS):
        raise StillSending(request_id)
    try:
        transcript_email(conversation=conversation, to=clean_transcript_email(email)).send()
    except BaseException:
        cache.delete(sending)  # not sent: the retry may send it
        raise
    cache.set(sent, 1, timeout=SENT_MEMORY_SECONDS)
    cache.delete(sending)
    return True
