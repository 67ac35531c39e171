"""Lead capture: the visitor leaves a mobile number (Team busy form), parsed and stored in E.164."""

from __future__ import annotations

from datetime import datetime

import phonenumbers
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from actions.events import EventType
from conversations.models import Conversation, Event, Visitor
from conversations.services import conversation_lock_for_visitor, event_append
from handoff.models import Handoff
from handoff.transitions.shared import announce_state, outbox_handoff_event
from pivra.errors import Conflict, DomainError


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
            raise Conflict("no_handoff", _("A mobile number can be left once a team member was requested."))
        if conversation.lead.get("phone") == e164:
            return conversation  # a resend of a number already saved changes nothing
        if conversation.status == Conversation.Status.CLOSED:
            # The team is done with this conversation: a number left now would notify nobody useful
            # (and would let a visitor keep firing lead notifications at a closed case).
            raise Conflict(
                "conversation_resolved",
                _("This conversation is resolved. Start a new conversation to leave your number."),
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
        outbox_handoff_event(EventType.LEAD_CAPTURED, conversation, handoff)
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
        raise DomainError(
            "invalid_phone", _("Please enter a valid mobile number, e.g. %(example)s.") % {"example": PHONE_EXAMPLE}
        )
    try:
        number = phonenumbers.parse(raw, _region_from_locale(locale))
    except phonenumbers.NumberParseException:
        raise DomainError(
            "invalid_phone", _("Please enter a valid mobile number, e.g. %(example)s.") % {"example": PHONE_EXAMPLE}
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise DomainError("invalid_phone", _("That number doesn't look right. Check it, including the country code."))
    # Only a number known to be fixed-line is refused: many regions (the US, Canada, …) share one
    # numbering plan for both, where phonenumbers answers FIXED_LINE_OR_MOBILE, and those must pass.
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE:
        raise DomainError("invalid_phone", _("That looks like a landline. Please enter a mobile number."))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
