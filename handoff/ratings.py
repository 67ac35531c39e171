"""The visitor's answer to "How did we do?" after a resolve: once per conversation, an event of kind
``rating`` in the thread, the conversation's rating columns (read by Analytics) and a
``conversation.rated`` outbox event, all in one transaction under the conversation's row lock.

In ``handoff`` rather than ``conversations`` because a conversation is resolved only through its
handoff (``handoff.transitions.resolve``) and the outbox payload carries the handoff's snapshot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from actions.events import EventType
from actions.outbox import outbox_write
from chatbots.models import Chatbot
from conversations.models import Conversation, Event
from conversations.services import conversation_lock, event_append, event_by_client_id
from handoff.models import Handoff
from handoff.payloads import event_data
from handoff.state import agent_display_name
from pivra.errors import Conflict, DomainError
from pivra.inputs import clean_client_id, strip_unstorable

RATING_COMMENT_MAX = 1000
# A rating comes from the resolved screen soon after the resolve; a week later it is not an answer.
RATEABLE_DAYS = 7
RATEABLE_FOR = timedelta(days=RATEABLE_DAYS)
# The scores each scale accepts: thumbs store 1 (👎) or 5 (👍), so one column and one average
# serve both scales.
SCALE_SCORES: dict[str, tuple[int, ...]] = {
    Chatbot.SatisfactionSurvey.THUMBS.value: (1, 5),
    Chatbot.SatisfactionSurvey.FIVE.value: (1, 2, 3, 4, 5),
}
THUMBS_UP, THUMBS_DOWN = "\U0001f44d", "\U0001f44e"


def _invalid_score_detail(scale: str) -> str:
    """Which scores the survey takes, as one whole sentence per scale (no " or " glued in code)."""
    scores = SCALE_SCORES[scale]
    if len(scores) == 2:
        # Translators: the two scores a thumbs survey takes (1 = thumbs down, 5 = thumbs up).
        return _("The score must be %(low)s or %(high)s for this survey.") % {"low": scores[0], "high": scores[1]}
    # Translators: the five scores a star survey takes, 1 to 5.
    return _("The score must be %(s1)s or %(s2)s or %(s3)s or %(s4)s or %(s5)s for this survey.") % {
        f"s{i}": score for i, score in enumerate(scores, start=1)
    }


# 4-5 stars or a thumbs up: a positive rating (the Analytics page's "% positive").
POSITIVE_MIN = 4


def rating_label(*, score: int, scale: str) -> str:
    """👍 Good / 👎 Bad, or ★★★★☆ 4/5: the rating as the team's thread shows it (words too, for a
    screen without an emoji font)."""
    if scale == Chatbot.SatisfactionSurvey.THUMBS:
        return f"{THUMBS_UP} Good" if score >= POSITIVE_MIN else f"{THUMBS_DOWN} Bad"
    return "\u2605" * score + "\u2606" * (5 - score) + f" {score}/5"


def _rating_text(*, score: int, scale: str, comment: str) -> str:
    label = rating_label(score=score, scale=scale)
    return f"{label} · \u201c{comment}\u201d" if comment else label


def clean_rating_comment(comment: str | None) -> str:
    comment = strip_unstorable(comment or "").strip()
    if len(comment) > RATING_COMMENT_MAX:
        raise DomainError(
            "comment_too_long",
            _("The comment can be at most %(count)d characters long.") % {"count": RATING_COMMENT_MAX},
            status=422,
        )
    return comment


def conversation_rate(
    *, conversation: Conversation, score: int, comment: str = "", client_id: str | None = None
) -> Event:
    """Record the visitor's rating of a resolved conversation. Exactly once per conversation: a
    second rating is refused with 409 ``already_rated`` (the first one stands); a resend with the same
    client id and the same answer returns the stored event. The caller has already scoped
    ``conversation`` to its visitor."""
    client_id = clean_client_id(client_id, required=False)
    comment = clean_rating_comment(comment)
    with transaction.atomic():
        conversation = conversation_lock(conversation_id=conversation.pk)
        if client_id is not None:
            existing = event_by_client_id(conversation=conversation, client_id=client_id)
            if existing is not None:
                if existing.kind != "rating" or existing.data.get("score") != score:
                    raise Conflict("client_id_reused", _("This client_id was already used for a different action."))
                return existing
        scale = conversation.chatbot.satisfaction_survey
        if scale == Chatbot.SatisfactionSurvey.OFF:
            raise Conflict("survey_off", _("This chat does not ask for ratings."))
        if conversation.status != Conversation.Status.CLOSED:
            raise Conflict("not_resolved", _("You can rate the conversation once it is resolved."))
        if not _still_rateable(conversation):
            raise Conflict("not_rateable", _("This conversation can no longer be rated."))
        if conversation.rated_at is not None:
            raise Conflict("already_rated", _("You already rated this conversation. Thank you!"))
        if isinstance(score, bool) or score not in SCALE_SCORES[scale]:
            # 409, not 422: which scores are valid depends on the chatbot's survey setting of the moment
            # (a schema-valid score must not get 422: tests/test_api_schema.py's positive-data check).
            raise Conflict("invalid_score", _invalid_score_detail(scale))
        now = timezone.now()
        Conversation.objects.filter(pk=conversation.pk).update(rating=score, rating_comment=comment, rated_at=now)
        conversation.rating, conversation.rating_comment, conversation.rated_at = score, comment, now
        event = event_append(
            conversation=conversation,
            kind="rating",
            author=Event.Author.VISITOR,
            text=_rating_text(score=score, scale=scale, comment=comment),
            client_id=client_id,
            data={"score": score, "scale": scale, "comment": comment},
        )
        _outbox_rated(conversation=conversation, scale=scale)
    return event


def _still_rateable(conversation: Conversation) -> bool:
    """Closed within RATEABLE_DAYS and not closed because the visitor asked for a person again (a
    superseded conversation was never resolved in front of them)."""
    if conversation.closed_at is not None and conversation.closed_at < timezone.now() - RATEABLE_FOR:
        return False
    return not Handoff.objects.filter(conversation_id=conversation.pk, resolve_reason="superseded").exists()


def last_agent_message(*, conversation: Conversation) -> Event | None:
    """The conversation's last message written by an agent: a person handled it, and its author is
    the agent the rating is about (whoever holds the handoff now, a requeue or transfer notwithstanding)."""
    return (
        Event.objects.select_related("agent")
        .filter(conversation_id=conversation.pk, author=Event.Author.AGENT, kind="message")
        .order_by("-seq")
        .first()
    )


def _outbox_rated(*, conversation: Conversation, scale: str) -> None:
    handoff = Handoff.objects.filter(conversation=conversation).first()
    data: dict[str, Any] = event_data(conversation=conversation, handoff=handoff)
    last = last_agent_message(conversation=conversation)
    held = last is not None
    data["rating"] = {
        "score": conversation.rating,
        "scale": scale,
        "positive": (conversation.rating or 0) >= POSITIVE_MIN,
        "comment": conversation.rating_comment,
        "rated_at": conversation.rated_at.isoformat() if conversation.rated_at else None,
    }
    data["agent"] = (
        {"id": last.agent_id, "name": agent_display_name(last.agent)}
        if last is not None and last.agent is not None
        else None
    )
    data["handled_by_person"] = held
    outbox_write(
        event_type=EventType.CONVERSATION_RATED,
        workspace_id=conversation.chatbot.workspace_id,
        chatbot_id=conversation.chatbot_id,
        data=data,
    )
