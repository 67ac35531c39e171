"""The visitor asks for a person: a request (button, or a keyword offer answered "Yes, connect me"),
and the offer itself. A request supersedes the visitor's older unanswered ones and arms the expiry timer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from actions.events import EventType
from chatbots.languages import owner_text
from chatbots.models import Chatbot
from chatbots.office_hours import office_open_at
from chatbots.presence import online_agent_ids
from conversations.models import Conversation, Event, Visitor
from conversations.services import conversation_lock_for_visitor, event_append
from handoff.models import Handoff
from handoff.transitions.resolve import resolve_transition
from handoff.transitions.routing import route_on_commit
from handoff.transitions.shared import OPEN_STATUSES, announce_state, handoff_available, outbox_handoff_event
from handoff.transitions.timers import BUSY_AFTER_HOURS, BUSY_OFFLINE, handoff_expire, schedule_expiry
from notifications.services import notify_on_commit
from pivra.errors import Conflict, DomainError, Forbidden, NotFound
from pivra.realtime import ai_silence_on_commit

OFFER_TEXT = "Would you like to speak with a team member?"
OFFER_ACCEPT = "Yes, connect me"
OFFER_DECLINE = "No thanks"


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
    skip = _skip_wait_reason(chatbot, now=now)
    handoff = Handoff.objects.create(
        conversation=conversation,
        chatbot=chatbot,
        workspace_id=chatbot.workspace_id,
        status=Handoff.Status.PENDING,
        trigger=trigger,
        requested_at=now,
        queued_at=now,
        # Skipping the wait: due at once, so the one expiry transition takes it to Team busy below.
        deadline_at=now if skip else now + timedelta(seconds=chatbot.handoff_timeout_seconds),
    )
    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.HANDOFF)
    conversation.status = Conversation.Status.HANDOFF
    ai_silence_on_commit(conversation_id=conversation.pk)  # before the broadcasts below: see pivra.realtime
    event_append(
        conversation=conversation,
        kind="handoff.requested",
        author=Event.Author.SYSTEM,
        text=owner_text(chatbot=chatbot, name="waiting", language=conversation.language),
        client_id=client_id,
        data={"trigger": trigger},
        notify_console=True,
    )
    outbox_handoff_event(EventType.CONVERSATION_ESCALATED, conversation, handoff)
    if skip:
        # Recorded (Handoff tab, analytics, a late claim still upgrades the visitor) but nobody is
        # waited for: straight to Team busy with the offline message. No pending state is announced
        # and no timer armed, so the widget never shows the spinner.
        handoff_expire(handoff_id=handoff.pk, now=now, reason=skip)
        handoff.refresh_from_db()
        return handoff
    announce_state(conversation=conversation, handoff=handoff)
    schedule_expiry(handoff, now=now)
    route_on_commit(handoff=handoff)  # round robin, when on: an offer to one agent after commit
    # After the routing above (on-commit callbacks run in order), so the notice knows the offered agent;
    # only a request that waits: a skip-the-wait Team busy above tells nobody.
    notify_on_commit(kind="handoff", conversation_id=conversation.pk)  # agents with no tab in front too
    return handoff


def _skip_wait_reason(chatbot: Chatbot, *, now: datetime) -> str | None:
    """Why a request skips the wait, if it does: outside office hours ("after_hours") whoever is online;
    else nobody effectively Online while the owner chose not to make visitors wait ("offline")."""
    if not office_open_at(chatbot=chatbot, at=now):
        return BUSY_AFTER_HOURS
    if chatbot.handoff_skip_wait_when_offline and not online_agent_ids(workspace_id=chatbot.workspace_id):
        return BUSY_OFFLINE
    return None


def _supersede_older_requests(conversation: Conversation, *, now: datetime) -> None:
    """A visitor who asks again from a newer conversation replaces their older unanswered request, so
    no agent claims a conversation the visitor has left."""
    older = Handoff.objects.filter(conversation__visitor_id=conversation.visitor_id, status__in=OPEN_STATUSES).exclude(
        conversation=conversation
    )
    for old in older:
        resolve_transition(
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
