"""The handoff state machine: request, claim, reply, resolve, expire, capture lead, continue with AI.

Each transition runs in one transaction: a guarded update (``… WHERE status IN (…)``) decides who
wins, the conversation log gets the next event, the domain event goes to the outbox, and the
broadcasts leave only after commit.

Lock order. Every transition on an existing handoff — claim, resolve, expire, continue with AI —
locks the handoff row (by its guarded update or ``select_for_update``) before the conversation row.
A request is the one exception: it starts under its own conversation's lock (its handoff does not
exist yet) and then supersedes the visitor's other waiting handoffs, each handoff row before that
conversation's row. That cannot deadlock, because no transaction that holds another handoff or
conversation waits for the requesting conversation's lock. Reply and lead capture lock only the
conversation and read the handoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from actions.events import EventType
from actions.outbox import outbox_write
from chatbots.features import workspace_has_feature
from chatbots.models import Chatbot, Membership
from chatbots.plans import Feature
from conversations.agent_names import agent_public_name
from conversations.models import Conversation, Event, Visitor
from conversations.services import (
    Received,
    clean_message_text,
    conversation_for_visitor,
    conversation_lock,
    conversation_lock_for_member,
    conversation_lock_for_visitor,
    conversation_start,
    event_append,
    event_by_client_id,
)
from handoff.models import Handoff
from handoff.payloads import event_data
from handoff.state import agent_display_name, conversation_state, state_snapshot
from pivra.errors import Conflict, DomainError, Forbidden, NotFound
from pivra.ids import parse_uuid
from pivra.inputs import clean_client_id
from pivra.queries import unique_row
from pivra.realtime import ai_silence_on_commit, console_group, send_on_commit, send_state_on_commit, visitor_group

OFFER_TEXT = "Would you like to speak with a team member?"
OFFER_ACCEPT = "Yes, connect me"
OFFER_DECLINE = "No thanks"
OPEN_STATUSES = (Handoff.Status.PENDING, Handoff.Status.BUSY)


def handoff_available(*, chatbot: Chatbot) -> bool:
    """Handoff is offered when the chatbot enables it and the workspace's plan includes it."""
    return chatbot.handoff_enabled and workspace_has_feature(workspace=chatbot.workspace, feature=Feature.HANDOFF)


def announce_state(*, conversation: Conversation, handoff: Handoff | None) -> None:
    """After commit: the widget's new state and the console's queue change."""
    send_state_on_commit(
        [visitor_group(conversation.visitor.public_id)],
        {"type": "state", "state": state_snapshot(conversation=conversation, handoff=handoff)},
        conversation_id=conversation.pk,
        seq=conversation.last_seq,
    )
    if handoff is not None:
        workspace_id = handoff.workspace_id
        unclaimed = Handoff.objects.filter(workspace_id=workspace_id, status__in=OPEN_STATUSES).count()
        send_on_commit(
            [console_group(workspace_id)],
            {
                "type": "queue",
                "conversation": str(conversation.public_id),
                "status": handoff.status,
                "unclaimed": unclaimed,
            },
        )


def _outbox(event_type: EventType, conversation: Conversation, handoff: Handoff | None, **extra: Any) -> None:
    data = event_data(conversation=conversation, handoff=handoff)
    data.update(extra)
    outbox_write(
        event_type=event_type,
        workspace_id=conversation.chatbot.workspace_id,
        chatbot_id=conversation.chatbot_id,
        data=data,
    )


# --- visitor side ----------------------------------------------------------------------------


def handoff_request(
    *,
    visitor: Visitor,
    conversation_public_id: str,
    trigger: str,
    client_id: str | None = None,
    now: datetime | None = None,
) -> Handoff:
    """Ask for a person. Idempotent per conversation: a second request returns the first handoff."""
    if trigger not in Handoff.Trigger.values:
        raise DomainError("invalid_trigger", "Trigger must be 'button' or 'keyword'.")
    with transaction.atomic():
        conversation = conversation_lock_for_visitor(visitor=visitor, public_id=conversation_public_id)
        return _request_locked(conversation, trigger=trigger, client_id=client_id, now=now or timezone.now())


def _request_locked(conversation: Conversation, *, trigger: str, client_id: str | None, now: datetime) -> Handoff:
    existing = Handoff.objects.filter(conversation=conversation).first()
    if existing is not None:
        return existing
    if conversation.status == Conversation.Status.CLOSED:
        raise Conflict("conversation_closed", "This conversation is resolved. Start a new conversation first.")
    chatbot = conversation.chatbot
    if not handoff_available(chatbot=chatbot):
        raise Forbidden("handoff_unavailable", "Talking to a team member is not available in this chat.")
    _supersede_older_requests(conversation, now=now)
    handoff = Handoff.objects.create(
        conversation=conversation,
        chatbot=chatbot,
        workspace_id=chatbot.workspace_id,
        status=Handoff.Status.PENDING,
        trigger=trigger,
        requested_at=now,
        deadline_at=now + timedelta(seconds=chatbot.handoff_timeout_seconds),
    )
    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.HANDOFF)
    conversation.status = Conversation.Status.HANDOFF
    ai_silence_on_commit(conversation_id=conversation.pk)  # before the broadcasts below: see pivra.realtime
    event_append(
        conversation=conversation,
        kind="handoff.requested",
        author=Event.Author.SYSTEM,
        text=chatbot.handoff_waiting_message,
        client_id=client_id,
        data={"trigger": trigger},
        notify_console=True,
    )
    _outbox(EventType.CONVERSATION_ESCALATED, conversation, handoff)
    announce_state(conversation=conversation, handoff=handoff)
    _schedule_expiry(handoff, now=now)
    return handoff


# Celery's Redis transport hands a task with an ETA to a worker at once; the worker holds it unacked
# until the ETA. Held longer than the broker's visibility timeout, it is redelivered — again and
# again — so only deadlines comfortably inside that window get a timer of their own.
ETA_MARGIN = timedelta(seconds=30)


def _timer_horizon() -> timedelta:
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    visibility = options.get("visibility_timeout", 3600)  # kombu's Redis default when unset
    return timedelta(seconds=float(visibility)) - ETA_MARGIN


def _schedule_expiry(handoff: Handoff, *, now: datetime) -> None:
    """A timer at the deadline when it is safely short; the beat sweep (``handoff_expire_overdue``)
    expires every handoff in any case, so a long timeout, a lost task or a broker outage only
    delays Team busy by one sweep interval."""
    if handoff.deadline_at - now > _timer_horizon():
        return
    from handoff.tasks import expire_handoff

    handoff_id, deadline = handoff.pk, handoff.deadline_at
    # robust: the request is committed; a broker that is down must not turn it into an error.
    transaction.on_commit(lambda: expire_handoff.apply_async((handoff_id,), eta=deadline), robust=True)


def handoff_timers_rearm(*, now: datetime | None = None) -> int:
    """Give every pending handoff due within the timer horizon a fresh timer; returns how many.

    Run when a worker that runs timers starts. A worker killed while holding timers keeps them
    unacked in the broker until the visibility timeout (minutes), so without this the sweep alone —
    one pass every ``PIVRA_HANDOFF_SWEEP_SECONDS`` — would time out every handoff until then. A
    deadline already past fires at once. A handoff that gets two timers is expired once: expiry is
    a guarded update."""
    now = now or timezone.now()
    from handoff.tasks import expire_handoff

    due = (
        Handoff.objects.filter(status=Handoff.Status.PENDING, deadline_at__lte=now + _timer_horizon())
        .order_by("deadline_at")
        .values_list("pk", "deadline_at")
    )
    armed = 0
    for handoff_id, deadline in due.iterator(chunk_size=500):
        expire_handoff.apply_async((handoff_id,), eta=deadline)
        armed += 1
    return armed


def _supersede_older_requests(conversation: Conversation, *, now: datetime) -> None:
    """A visitor who asks again from a newer conversation replaces their older unanswered request, so
    no agent claims a conversation the visitor has left."""
    older = Handoff.objects.filter(conversation__visitor_id=conversation.visitor_id, status__in=OPEN_STATUSES).exclude(
        conversation=conversation
    )
    for old in older:
        _resolve_transition(
            handoff=old,
            guard=Q(status__in=OPEN_STATUSES),
            now=now,
            agent=None,
            text="Closed: the visitor asked for a team member again in a newer conversation.",
            reason="superseded",
        )


def handoff_offer(*, conversation: Conversation, reply_to_seq: int, keyword: str) -> Event:
    """The bot asks whether the visitor wants a person (a trigger keyword was typed)."""
    return event_append(
        conversation=conversation,
        kind="handoff.offer",
        author=Event.Author.SYSTEM,
        text=OFFER_TEXT,
        data={"reply_to": reply_to_seq, "keyword": keyword, "options": [OFFER_ACCEPT, OFFER_DECLINE]},
    )


@dataclass(frozen=True)
class OfferAnswer:
    event: Event
    handoff: Handoff | None


def handoff_offer_answer(
    *,
    visitor: Visitor,
    conversation_public_id: str,
    offer_seq: int,
    accept: bool,
    client_id: str,
    now: datetime | None = None,
) -> OfferAnswer:
    """ "Yes, connect me" requests a handoff (trigger: keyword); "No thanks" lets the AI answer as usual."""
    with transaction.atomic():
        conversation = conversation_lock_for_visitor(visitor=visitor, public_id=conversation_public_id)
        offer = Event.objects.filter(conversation=conversation, seq=offer_seq, kind="handoff.offer").first()
        if offer is None:
            raise NotFound("offer_not_found", "There is no such question to answer in this conversation.")
        answered = Event.objects.filter(
            conversation=conversation,
            kind__in=("handoff.offer_accepted", "handoff.offer_declined"),
            data__offer_seq=offer_seq,
        ).first()
        if answered is not None:
            return OfferAnswer(event=answered, handoff=Handoff.objects.filter(conversation=conversation).first())
        if conversation.status != Conversation.Status.OPEN:
            raise Conflict("offer_expired", "This question no longer applies to the conversation.")
        kind = "handoff.offer_accepted" if accept else "handoff.offer_declined"
        event = event_append(
            conversation=conversation,
            kind=kind,
            author=Event.Author.VISITOR,
            text=OFFER_ACCEPT if accept else OFFER_DECLINE,
            client_id=client_id,
            data={"offer_seq": offer_seq},
        )
        if accept:
            handoff = _request_locked(
                conversation, trigger=Handoff.Trigger.KEYWORD, client_id=None, now=now or timezone.now()
            )
            return OfferAnswer(event=event, handoff=handoff)
        from conversations.pipeline import reply_with_ai

        original = Event.objects.get(conversation=conversation, seq=offer.data["reply_to"])
        reply_with_ai(conversation=conversation, event=original)
        return OfferAnswer(event=event, handoff=None)


def lead_capture(
    *,
    visitor: Visitor,
    conversation_public_id: str,
    phone: str,
    locale: str = "",
    client_id: str | None = None,
    now: datetime | None = None,
) -> Conversation:
    """Save the visitor's mobile number in E.164 to the conversation's lead data (Team busy form)."""
    e164 = parse_phone(raw=phone, locale=locale or visitor.locale)
    with transaction.atomic():
        conversation = conversation_lock_for_visitor(visitor=visitor, public_id=conversation_public_id)
        handoff = Handoff.objects.filter(conversation=conversation).first()
        if handoff is None:
            raise Conflict("no_handoff", "A mobile number can be left once a team member was requested.")
        if conversation.lead.get("phone") == e164:
            return conversation  # a resend of a number already saved changes nothing
        if conversation.status == Conversation.Status.CLOSED:
            # The team is done with this conversation: a number left now would notify nobody useful
            # (and would let a visitor keep firing lead notifications at a closed case).
            raise Conflict(
                "conversation_resolved",
                "This conversation is resolved. Start a new conversation to leave your number.",
            )
        conversation.lead = {**conversation.lead, "phone": e164, "captured_at": (now or timezone.now()).isoformat()}
        Conversation.objects.filter(pk=conversation.pk).update(lead=conversation.lead)
        event_append(
            conversation=conversation,
            kind="lead.captured",
            author=Event.Author.VISITOR,
            text=e164,
            client_id=client_id,
            data={"phone": e164},
            notify_console=True,
        )
        _outbox(EventType.LEAD_CAPTURED, conversation, handoff)
        announce_state(conversation=conversation, handoff=handoff)
    return conversation


def _region_from_locale(locale: str) -> str | None:
    parts = locale.replace("_", "-").split("-")
    if len(parts) >= 2 and len(parts[-1]) == 2 and parts[-1].isalpha():
        return parts[-1].upper()
    return None


PHONE_EXAMPLE = "+44 7911 123456"


def parse_phone(*, raw: str, locale: str = "") -> str:
    """``"06 12 34 56 78"`` with locale ``fr-FR`` → ``"+33612345678"``. Refuses what is not a valid
    number, and numbers known to be landlines: the team follows up by text or on a mobile."""
    raw = (raw or "").strip()
    if not raw or len(raw) > 40:
        raise DomainError("invalid_phone", f"Please enter a valid mobile number, e.g. {PHONE_EXAMPLE}.")
    try:
        number = phonenumbers.parse(raw, _region_from_locale(locale))
    except phonenumbers.NumberParseException:
        raise DomainError("invalid_phone", f"Please enter a valid mobile number, e.g. {PHONE_EXAMPLE}.") from None
    if not phonenumbers.is_valid_number(number):
        raise DomainError("invalid_phone", "That number doesn't look right. Check it, including the country code.")
    # Only a number known to be fixed-line is refused: many regions (the US, Canada, …) share one
    # numbering plan for both, where phonenumbers answers FIXED_LINE_OR_MOBILE, and those must pass.
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE:
        raise DomainError("invalid_phone", "That looks like a landline. Please enter a mobile number.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def handoff_continue_with_ai(
    *, visitor: Visitor, conversation_public_id: str, client_id: str | None = None
) -> Conversation:
    """Team busy → a fresh AI conversation at once; the handoff stays claimable, and a late claim
    brings the widget back to it. If an agent claimed it first, the visitor stays with the agent:
    the live conversation is returned and nothing switches."""
    target = conversation_for_visitor(visitor=visitor, public_id=conversation_public_id)
    with transaction.atomic():
        # The handoff row first (the lock order of claim): a claim that has already updated it makes
        # us wait for its commit and then see it active; one that comes later waits for ours. With a
        # plain read a claim could commit between our check and our commit, and the widget would hear
        # "● Live Agent" and then be switched away to a fresh AI chat.
        handoff = Handoff.objects.select_for_update().filter(conversation_id=target.pk).first()
        conversation = conversation_lock(conversation_id=target.pk)
        if handoff is not None and handoff.status == Handoff.Status.ACTIVE:
            return conversation
        if client_id and event_by_client_id(conversation=conversation, client_id=client_id) is not None:
            newer = Conversation.objects.filter(visitor=visitor, created_at__gt=conversation.created_at).first()
            if newer is not None:
                return newer
        if handoff is None or handoff.status != Handoff.Status.BUSY:
            raise Conflict("not_busy", "Continuing with the AI is offered while the team is busy.")
        event_append(
            conversation=conversation,
            kind="conversation.continued",
            author=Event.Author.SYSTEM,
            text="The visitor continued with the AI while waiting.",
            client_id=client_id,
            notify_console=True,
        )
        fresh = conversation_start(visitor=visitor)
        send_on_commit([visitor_group(visitor.public_id)], {"type": "switch", "state": conversation_state(fresh)})
    return fresh


def conversation_start_new(*, visitor: Visitor) -> Conversation:
    """ "Start new conversation": a fresh AI conversation, unless an agent is live with the visitor."""
    if Handoff.objects.filter(conversation__visitor=visitor, status=Handoff.Status.ACTIVE).exists():
        raise Conflict("agent_live", "A team member is with you in this conversation.")
    return conversation_start(visitor=visitor)


# --- agent side ------------------------------------------------------------------------------


def _agent_handoff(*, agent: User, conversation_public_id: str) -> Handoff:
    """The handoff of a conversation in one of the agent's workspaces; anything else is not found."""
    workspace_ids = Membership.objects.filter(user=agent).values_list("workspace_id", flat=True)
    key = parse_uuid(conversation_public_id)
    handoff = (
        unique_row(
            Handoff.objects.select_related("claimed_by").filter(
                conversation__public_id=key, workspace_id__in=workspace_ids
            )
        )
        if key
        else None
    )
    if handoff is None:
        raise NotFound("handoff_not_found", "No handoff for this conversation in your workspaces.")
    return handoff


def handoff_claim(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """Exactly one concurrent caller wins; the others get 409 naming who holds it."""
    now = now or timezone.now()
    handoff = _agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    with transaction.atomic():
        won = Handoff.objects.filter(pk=handoff.pk, status__in=OPEN_STATUSES).update(
            status=Handoff.Status.ACTIVE,
            claimed_by=agent,
            # ``now`` was taken before this update may have waited on an expiry holding the row; a
            # claim that lands after a timeout must not be dated before it.
            claimed_at=Greatest(Value(now), Coalesce(F("timed_out_at"), Value(now))),
        )
        if not won:
            # The losers of a claim storm: one read says who holds it (with the holder's name).
            handoff = Handoff.objects.select_related("claimed_by").get(pk=handoff.pk)
            if handoff.status == Handoff.Status.ACTIVE and handoff.claimed_by_id == agent.pk:
                return handoff
            if handoff.status == Handoff.Status.ACTIVE:
                holder = agent_display_name(handoff.claimed_by)
                raise Conflict("already_claimed", f"Already claimed by {holder}.")
            raise Conflict("handoff_resolved", "This handoff is already resolved.")
        handoff.refresh_from_db()  # timed_out_at may have been set since it was read (a late claim)
        handoff.claimed_by = agent  # the row now says so; spares a query when the state is built
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        late = handoff.timed_out_at is not None
        name = agent_public_name(agent)  # the visitor reads this line
        event_append(
            conversation=conversation,
            kind="handoff.claimed",
            author=Event.Author.SYSTEM,
            text=f"{name} joined the conversation.",
            agent=agent,
            data={"late": late},
            notify_console=True,
        )
        _outbox(EventType.HANDOFF_CLAIMED, conversation, handoff, late=late)
        announce_state(conversation=conversation, handoff=handoff)
    return handoff


def handoff_reply(*, agent: User, conversation_public_id: str, text: str, client_id: str) -> Received:
    """Only the agent who claimed the conversation may reply; a resend with the same client id is stored once."""
    text = clean_message_text(text)
    client_id = clean_client_id(client_id, required=True) or ""
    key = parse_uuid(conversation_public_id)
    with transaction.atomic():
        # The hot path of a live chat, so four statements: the locked conversation (scoped to the
        # agent's workspaces in the same query), the resend check, the handoff, the append. The
        # handoff is read after the lock, so a claim or resolve committed meanwhile is seen.
        conversation = conversation_lock_for_member(public_id=key, user=agent) if key else None
        handoff = unique_row(Handoff.objects.filter(conversation_id=conversation.pk)) if conversation else None
        if conversation is None or handoff is None:
            raise NotFound("handoff_not_found", "No handoff for this conversation in your workspaces.")
        existing = event_by_client_id(conversation=conversation, client_id=client_id)
        if existing is not None:
            if existing.text != text or existing.agent_id != agent.pk:
                raise Conflict("client_id_reused", "This client_id was already used for a different message.")
            return Received(event=existing, duplicate=True)
        if handoff.status != Handoff.Status.ACTIVE:
            raise Conflict("not_claimed", "Claim this conversation before replying.")
        if handoff.claimed_by_id != agent.pk:
            holder = agent_display_name(handoff.claimed_by)
            raise Forbidden("not_assignee", f"Only {holder}, who claimed this conversation, can reply.")
        event = event_append(
            conversation=conversation,
            kind="message",
            author=Event.Author.AGENT,
            text=text,
            agent=agent,
            client_id=client_id,
        )
    return Received(event=event, duplicate=False)


def handoff_resolve(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """Close the conversation with its thread whole. An active handoff is resolved by its assignee;
    an unclaimed one by anyone in the workspace."""
    now = now or timezone.now()
    handoff = _agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    with transaction.atomic():
        won = _resolve_transition(
            handoff=handoff,
            guard=Q(status=Handoff.Status.ACTIVE, claimed_by=agent) | Q(status__in=OPEN_STATUSES),
            now=now,
            agent=agent,
            text="Conversation resolved ✓",
        )
        if not won:
            if handoff.status == Handoff.Status.RESOLVED:
                raise Conflict("handoff_resolved", "This handoff is already resolved.")
            holder = agent_display_name(handoff.claimed_by)
            raise Forbidden("not_assignee", f"Only {holder}, who claimed this conversation, can resolve it.")
    return handoff


def _resolve_transition(
    *, handoff: Handoff, guard: Q, now: datetime, agent: User | None, text: str, reason: str | None = None
) -> bool:
    """The one resolve transition (an agent's Resolve, or a newer request superseding an old one):
    a guarded update, then the closed conversation, its event, the outbox row and the broadcasts.
    Runs inside the caller's transaction; False, with ``handoff`` refreshed, when the guard refused."""
    won = (
        Handoff.objects.filter(pk=handoff.pk)
        .filter(guard)
        .update(status=Handoff.Status.RESOLVED, resolved_at=now, resolved_by=agent)
    )
    handoff.refresh_from_db()
    if not won:
        return False
    conversation = conversation_lock(conversation_id=handoff.conversation_id)
    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.CLOSED, closed_at=now)
    conversation.status, conversation.closed_at = Conversation.Status.CLOSED, now
    extra = {"reason": reason} if reason else {}
    event_append(
        conversation=conversation,
        kind="handoff.resolved",
        author=Event.Author.SYSTEM,
        text=text,
        agent=agent,
        data=extra,
        notify_console=True,
    )
    _outbox(EventType.HANDOFF_RESOLVED, conversation, handoff, **extra)
    announce_state(conversation=conversation, handoff=handoff)
    return True


# --- timers ----------------------------------------------------------------------------------


def handoff_expire(*, handoff_id: int, now: datetime | None = None) -> bool:
    """Pending past its deadline → Team busy. Idempotent, never after a claim, never twice."""
    now = now or timezone.now()
    with transaction.atomic():
        won = Handoff.objects.filter(pk=handoff_id, status=Handoff.Status.PENDING, deadline_at__lte=now).update(
            status=Handoff.Status.BUSY, timed_out_at=now
        )
        if not won:
            return False
        handoff = Handoff.objects.select_related("chatbot").get(pk=handoff_id)
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        event_append(
            conversation=conversation,
            kind="handoff.timed_out",
            author=Event.Author.SYSTEM,
            text=handoff.chatbot.handoff_busy_message,
            notify_console=True,
        )
        _outbox(EventType.HANDOFF_TIMED_OUT, conversation, handoff)
        announce_state(conversation=conversation, handoff=handoff)
    return True


def handoff_expire_overdue(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The sweep: expire every pending handoff whose deadline passed (heals lost or late timers)."""
    now = now or timezone.now()
    overdue = Handoff.objects.filter(status=Handoff.Status.PENDING, deadline_at__lte=now).values_list("pk", flat=True)
    return sum(handoff_expire(handoff_id=pk, now=now) for pk in list(overdue[:limit]))
