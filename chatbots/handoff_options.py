"""The handoff options of issue 15 on a chatbot: office hours, the offline message, skipping the wait
when nobody is online, hiding the button outside hours, the idle auto-resolve override and routing.
Saved by one service that checks every value (the dashboard form parses; this decides)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from chatbots.models import MAX_IDLE_MINUTES, Chatbot
from chatbots.office_hours import closed_dates_clean, timezone_clean, weekly_clean
from pivra.errors import DomainError

MAX_MESSAGE_LENGTH = 500


@dataclass(frozen=True)
class HandoffOptions:
    offline_message: str
    skip_wait_when_offline: bool = True
    hide_outside_hours: bool = False
    idle_minutes: int | None = None
    routing: str = Chatbot.Routing.FIRST_CLAIM
    office_hours_enabled: bool = False
    timezone: str = "UTC"
    weekly: dict[str, list[list[str]]] = field(default_factory=dict)
    closed_dates: list[str] = field(default_factory=list)
    typing_preview: bool = False  # agents see the visitor's unsent text (off by default)
    # "How did we do?" after a resolve: off / thumbs / five (None: leave the saved choice as it is).
    satisfaction_survey: str | None = None
    # The resolved screen's "Email me the transcript" (None: leave the saved choice as it is).
    transcript_emails: bool | None = None

    @classmethod
    def of(cls, chatbot: Chatbot) -> HandoffOptions:
        """The chatbot's options as saved (a starting point for changing one of them)."""
        return cls(
            offline_message=chatbot.handoff_offline_message,
            skip_wait_when_offline=chatbot.handoff_skip_wait_when_offline,
            hide_outside_hours=chatbot.hide_handoff_outside_hours,
            idle_minutes=chatbot.handoff_idle_minutes,
            routing=chatbot.handoff_routing,
            office_hours_enabled=chatbot.office_hours_enabled,
            timezone=chatbot.office_hours_timezone,
            weekly=dict(chatbot.office_hours or {}),
            closed_dates=list(chatbot.office_closed_dates or []),
            typing_preview=chatbot.typing_preview,
            satisfaction_survey=chatbot.satisfaction_survey,
            transcript_emails=chatbot.transcript_emails,
        )


def chatbot_update_handoff_options(*, chatbot: Chatbot, options: HandoffOptions) -> Chatbot:
    """Save the options, each checked (bounded sizes, known zone, valid non-overlapping ranges, ISO dates)."""
    message = options.offline_message.strip()
    if not message:
        raise DomainError("invalid_message", _("The offline message cannot be empty."))
    if len(message) > MAX_MESSAGE_LENGTH:
        raise DomainError(
            "invalid_message", _("Keep the offline message under %(n)d characters.") % {"n": MAX_MESSAGE_LENGTH}
        )
    idle = options.idle_minutes
    if idle is not None and (isinstance(idle, bool) or not 1 <= idle <= MAX_IDLE_MINUTES):
        raise DomainError(
            "invalid_idle_minutes",
            _("Idle minutes must be between 1 and %(max)d, or empty.") % {"max": MAX_IDLE_MINUTES},
        )
    if options.routing not in Chatbot.Routing.values:
        raise DomainError("invalid_routing", _("Routing must be first claim or round robin."))
    survey = chatbot.satisfaction_survey if options.satisfaction_survey is None else options.satisfaction_survey
    if survey not in Chatbot.SatisfactionSurvey.values:
        raise DomainError("invalid_survey", _("The satisfaction survey must be off, thumbs or 1 to 5 stars."))
    zone = timezone_clean(options.timezone)
    weekly = weekly_clean(options.weekly)
    closed = closed_dates_clean(options.closed_dates)
    if options.office_hours_enabled and not any(weekly.values()):
        raise DomainError(
            "invalid_office_hours", _("Office hours are on but no day has hours: add hours, or turn office hours off.")
        )
    chatbot.handoff_offline_message = message
    chatbot.handoff_skip_wait_when_offline = bool(options.skip_wait_when_offline)
    chatbot.hide_handoff_outside_hours = bool(options.hide_outside_hours)
    chatbot.handoff_idle_minutes = idle
    chatbot.handoff_routing = options.routing
    chatbot.office_hours_enabled = bool(options.office_hours_enabled)
    chatbot.office_hours_timezone = zone
    chatbot.office_hours = weekly
    chatbot.office_closed_dates = closed
    chatbot.typing_preview = bool(options.typing_preview)
    chatbot.satisfaction_survey = survey
    if options.transcript_emails is not None:
        chatbot.transcript_emails = bool(options.transcript_emails)
    chatbot.save(
        update_fields=[
            "handoff_offline_message",
            "handoff_skip_wait_when_offline",
            "hide_handoff_outside_hours",
            "handoff_idle_minutes",
            "handoff_routing",
            "office_hours_enabled",
            "office_hours_timezone",
            "office_hours",
            "office_closed_dates",
            "typing_preview",
            "satisfaction_survey",
            "transcript_emails",
            "updated_at",
        ]
    )
    return chatbot
