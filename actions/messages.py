"""What an event says to people: the summary shared by emails and Slack messages.

Texts are worded in the active language: delivery renders each message inside
``translation.override(<the chatbot's default_language>)`` (actions/deliveries.py, actions/services.py).

Every value that a visitor can influence (the page they were on, their language, the number they
typed) is passed through as plain text here and escaped where it is rendered: Django's autoescape
for the HTML email, ``slack_escape`` for Slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import dateformat
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from actions.events import DIGEST_TYPE, EventType

TRIGGERS = {"button": gettext_lazy("“Talk to a human” button"), "keyword": gettext_lazy("Trigger keyword")}
# handoff.timed_out without waiting: the request came outside office hours or with nobody online.
SKIPPED_WAIT_INTROS = {
    "after_hours": gettext_lazy(
        "The visitor asked for a person outside your office hours, so they saw your offline message "
        "and were asked for a mobile number. A late claim still reaches them."
    ),
    "offline": gettext_lazy(
        "The visitor asked for a person while nobody on the team was online, so they saw your offline "
        "message and were asked for a mobile number. A late claim still reaches them."
    ),
}
# handoff.released: why the live conversation went back to the queue (the payload's ``reason``).
# Translators: %(agent)s is the agent's name, or "The agent".
RELEASE_INTROS = {
    "released": gettext_lazy("%(agent)s released the conversation; it is waiting for a team member again."),
    "transfer_expired": gettext_lazy(
        "The transfer was not accepted in time; the conversation is waiting for a team member again."
    ),
    "transfer_declined": gettext_lazy(
        "The colleague declined the transfer; the conversation is waiting for a team member again."
    ),
    "member_removed": gettext_lazy(
        "%(agent)s was removed from the workspace; the conversation is waiting for a team member again."
    ),
    "agent_deactivated": gettext_lazy(
        "%(agent)s's account was deactivated; the conversation is waiting for a team member again."
    ),
    "agent_deleted": gettext_lazy(
        "%(agent)s's account was deleted; the conversation is waiting for a team member again."
    ),
    "agent_missing": gettext_lazy(
        "The agent is no longer in the workspace; the conversation is waiting for a team member again."
    ),
}


@dataclass(frozen=True)
class Summary:
    event_type: str
    title: str
    intro: str
    chatbot: str
    url: str | None
    facts: list[tuple[str, str]] = field(default_factory=list)
    is_test: bool = False
    link_label: str = ""  # "Open conversation" in the active language when left empty (summarize sets it)


def _when(value: Any) -> str:
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    # Month abbreviation in the active language (Django's date format "M"); the time zone's name as is.
    return dateformat.format(moment, "d M Y, H:i T" if moment.tzinfo else "d M Y, H:i").strip()


def _text(value: Any, limit: int = 300) -> str:
    """A visitor-supplied value as one line of bounded plain text."""
    text = " ".join(str(value or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(payload: dict[str, Any], *, is_test: bool = False) -> Summary:
    event_type = str(payload.get("type", ""))
    data: dict[str, Any] = payload.get("data") or {}
    if event_type == DIGEST_TYPE:
        return _digest_summary(data, is_test=is_test)
    conversation = data.get("conversation") or {}
    visitor = data.get("visitor") or {}
    handoff = data.get("handoff") or {}
    # Translators: stands in for a chatbot's name in a notification email when the event has none.
    chatbot = _text((data.get("chatbot") or {}).get("name"), 80) or _("your chatbot")
    agent = _text((handoff.get("claimed_by") or {}).get("name"), 80)

    facts: list[tuple[str, str]] = [(_("Chatbot"), chatbot)]
    if handoff.get("trigger"):
        facts.append((_("Trigger"), str(TRIGGERS.get(handoff["trigger"], _text(handoff["trigger"], 40)))))
    if visitor.get("current_page"):
        facts.append((_("Visitor page"), _text(visitor["current_page"])))
    if visitor.get("locale"):
        facts.append((_("Visitor language"), _text(visitor["locale"], 35)))
    if visitor.get("phone"):
        facts.append((_("Mobile number"), _text(visitor["phone"], 40)))

    if event_type == EventType.CONVERSATION_ESCALATED:
        title = _("New handoff request")
        intro = _("A visitor asked to talk to a team member. Claim the conversation in the Handoff tab.")
        facts.append((_("Requested"), _when(handoff.get("requested_at"))))
    elif event_type == EventType.HANDOFF_CLAIMED:
        if agent:
            title = _("Handoff claimed by %(agent)s") % {"agent": agent}
            intro = _("%(agent)s joined the conversation and is talking to the visitor.") % {"agent": agent}
        else:
            title = _("Handoff claimed by an agent")
            intro = _("An agent joined the conversation and is talking to the visitor.")
        if data.get("late"):
            intro = " ".join([intro, _("The visitor had already been shown the Team busy message.")])
        facts.append((_("Claimed"), _when(handoff.get("claimed_at"))))
    elif event_type == EventType.HANDOFF_TIMED_OUT:
        title = _("No one answered in time")
        intro = _(
            "Nobody claimed the conversation before the response timeout, so the visitor saw your "
            "Team busy message and was asked for a mobile number. A late claim still reaches them."
        )
        if data.get("reason") in SKIPPED_WAIT_INTROS:
            title = _("Handoff request while nobody could answer")
            intro = str(SKIPPED_WAIT_INTROS[str(data.get("reason"))])
        facts.append((_("Timed out"), _when(handoff.get("timed_out_at"))))
    elif event_type == EventType.LEAD_CAPTURED:
        title = _("Lead captured")
        intro = _("The visitor left a mobile number so your team can follow up.")
    elif event_type == EventType.HANDOFF_RESOLVED:
        title = _("Conversation resolved")
        intro = _("The conversation was resolved; its full thread stays in the dashboard.")
        if data.get("reason") == "superseded":
            intro = _("The request was closed because the visitor asked again from a newer conversation.")
        facts.append((_("Resolved"), _when(handoff.get("resolved_at"))))
    elif event_type == EventType.HANDOFF_TRANSFERRED:
        source = _text((data.get("from_agent") or {}).get("name"), 80)
        target = _text((data.get("to_agent") or {}).get("name"), 80)
        title, intro = _transfer_texts(source=source, target=target, take_over=bool(data.get("take_over")))
        facts.extend([(_("From"), source), (_("To"), target)])
    elif event_type == EventType.HANDOFF_RELEASED:
        previous = _text((data.get("previous_agent") or {}).get("name"), 80)
        title = _("Conversation back in the queue")
        reason = RELEASE_INTROS.get(str(data.get("reason")))
        intro = (
            str(reason) % {"agent": previous or _("The agent")}
            if reason is not None
            else _("The live conversation went back to the queue.")
        )
        facts.append((_("Previous agent"), previous))
    elif event_type == EventType.CONVERSATION_RATED:
        rating = data.get("rating") or {}
        rated_agent = _text((data.get("agent") or {}).get("name"), 80)
        title = _rating_title(rating)
        intro = (
            _("The visitor rated the conversation with %(agent)s.") % {"agent": rated_agent}
            if rated_agent
            else _("The visitor rated a conversation the AI answered.")
        )
        facts.extend([(_("Agent"), rated_agent), (_("Comment"), _text(rating.get("comment"), 1000))])
    else:
        # Translators: %(type)s is an event's machine name, e.g. "handoff.claimed".
        title = _("Event %(type)s") % {"type": _text(event_type, 40)}
        intro = _("Something happened in a conversation.")
    url = conversation.get("url")
    return Summary(
        event_type=event_type,
        title=title,
        intro=intro,
        chatbot=chatbot,
        url=str(url) if url else None,
        facts=[(label, value) for label, value in facts if value],
        is_test=is_test,
        link_label=_("Open conversation"),
    )


def _transfer_texts(*, source: str, target: str, take_over: bool) -> tuple[str, str]:
    """(title, intro) of handoff.transferred; a missing name gets its own whole sentence."""
    if take_over:
        title = (
            _("%(target)s took over a conversation") % {"target": target}
            if target
            else _("An admin took over a conversation")
        )
        if target and source:
            intro = _("%(target)s took over the live conversation from %(source)s.") % {
                "target": target,
                "source": source,
            }
        elif target:
            intro = _("%(target)s took over the live conversation from its agent.") % {"target": target}
        elif source:
            intro = _("An owner or admin took over the live conversation from %(source)s.") % {"source": source}
        else:
            intro = _("An owner or admin took over the live conversation from its agent.")
        return title, intro
    title = (
        _("Conversation transferred to %(target)s") % {"target": target}
        if target
        else _("Conversation transferred to a colleague")
    )
    # Translators: %(source)s / %(target)s are agents' names, or "An agent" / "a colleague".
    intro = _(
        "%(source)s transferred the live conversation to %(target)s; "
        "if they don't accept it in time, it goes back to the queue."
    ) % {"source": source or _("An agent"), "target": target or _("a colleague")}
    return title, intro


def _rating_title(rating: dict[str, Any]) -> str:
    score = _number(rating.get("score"))
    if rating.get("scale") == "thumbs":
        return _("Visitor rated 👍") if score >= 4 else _("Visitor rated 👎")
    # Translators: a star rating out of five, e.g. "Visitor rated 4/5".
    return _("Visitor rated %(score)s/5") % {"score": score}


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _digest_texts(event_type: str, *, count: int, limit: int, window: str) -> tuple[str, str, str]:
    """(title, what came in, what the cap does) of a digest: whole sentences per event type."""
    values = {"count": count, "limit": limit, "window": window}
    if event_type == EventType.CONVERSATION_ESCALATED.value:
        title = ngettext(
            "%(count)s more handoff request in the last %(window)s",
            "%(count)s more handoff requests in the last %(window)s",
            count,
        )
        came = ngettext(
            "%(count)s more handoff request came in during the last %(window)s.",
            "%(count)s more handoff requests came in during the last %(window)s.",
            count,
        )
        cap = ngettext(
            "To keep a flood from burying your team, Pivra sends at most %(limit)s handoff request one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            "To keep a flood from burying your team, Pivra sends at most %(limit)s handoff requests one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            limit,
        )
    elif event_type == EventType.LEAD_CAPTURED.value:
        title = ngettext(
            "%(count)s more lead in the last %(window)s", "%(count)s more leads in the last %(window)s", count
        )
        came = ngettext(
            "%(count)s more lead came in during the last %(window)s.",
            "%(count)s more leads came in during the last %(window)s.",
            count,
        )
        cap = ngettext(
            "To keep a flood from burying your team, Pivra sends at most %(limit)s lead one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            "To keep a flood from burying your team, Pivra sends at most %(limit)s leads one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            limit,
        )
    elif event_type == EventType.CONVERSATION_RATED.value:
        title = ngettext(
            "%(count)s more rating in the last %(window)s", "%(count)s more ratings in the last %(window)s", count
        )
        came = ngettext(
            "%(count)s more rating came in during the last %(window)s.",
            "%(count)s more ratings came in during the last %(window)s.",
            count,
        )
        cap = ngettext(
            "To keep a flood from burying your team, Pivra sends at most %(limit)s rating one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            "To keep a flood from burying your team, Pivra sends at most %(limit)s ratings one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            limit,
        )
    else:
        title = ngettext(
            "%(count)s more notification in the last %(window)s",
            "%(count)s more notifications in the last %(window)s",
            count,
        )
        came = ngettext(
            "%(count)s more notification came in during the last %(window)s.",
            "%(count)s more notifications came in during the last %(window)s.",
            count,
        )
        cap = ngettext(
            "To keep a flood from burying your team, Pivra sends at most %(limit)s notification one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            "To keep a flood from burying your team, Pivra sends at most %(limit)s notifications one by one "
            "per %(window)s for a chatbot and sums up the rest here.",
            limit,
        )
    return title % values, came % values, cap % values


def _digest_summary(data: dict[str, Any], *, is_test: bool) -> Summary:
    """The notifications held back by a chatbot's cap (actions/caps.py), summed up in one message."""
    count, limit, minutes = _number(data.get("count")), _number(data.get("limit")), _number(data.get("window_minutes"))
    # Translators: the length of a digest's window, used in "… in the last %(window)s".
    window = ngettext("%(minutes)s minute", "%(minutes)s minutes", minutes) % {"minutes": minutes}
    title, came, cap = _digest_texts(str(data.get("event_type")), count=count, limit=limit, window=window)
    chatbot = _text((data.get("chatbot") or {}).get("name"), 80) or _("your chatbot")
    url = data.get("url")
    return Summary(
        event_type=DIGEST_TYPE,
        title=title,
        intro=" ".join([came, cap, _("Every one of them is in the dashboard.")]),
        chatbot=chatbot,
        url=str(url) if url else None,
        facts=[
            (label, value)
            for label, value in [
                (_("Chatbot"), chatbot),
                (_("From"), _when(data.get("window_start"))),
                (_("To"), _when(data.get("window_end"))),
            ]
            if value
        ],
        is_test=is_test,
        link_label=_("Open the conversations"),
    )


# --- Slack ------------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's three control characters, so visitor text cannot become <!channel> or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(summary: Summary) -> dict[str, Any]:
    headline = slack_escape(f"{summary.title} · {summary.chatbot}")
    if summary.is_test:
        # Translators: the prefix of a test notification's headline or subject; %(text)s is the rest.
        headline = _("[Test] %(text)s") % {"text": headline}
    fallback = headline
    if summary.url:
        fallback += f" <{slack_escape(summary.url)}|{slack_escape(summary.link_label)}>"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*\n{slack_escape(summary.intro)}"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{slack_escape(label)}*\n{slack_escape(value)}"}
                for label, value in summary.facts[:10]
            ],
        },
    ]
    if summary.url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": summary.link_label},
                        "url": summary.url,
                        "style": "primary",
                    }
                ],
            }
        )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Pivra · `{slack_escape(summary.event_type)}`"}]}
    )
    return {"text": fallback, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


# --- email ------------------------------------------------------------------------------------


def event_email(*, summary: Summary, recipients: list[str]) -> EmailMultiAlternatives:
    context = {"summary": summary, "public_url": settings.PUBLIC_URL}
    subject = " ".join(f"[{summary.chatbot}] {summary.title}".split())
    if summary.is_test:
        subject = _("[Test] %(text)s") % {"text": subject}
    text = render_to_string("actions/email/event.txt", context)
    html = render_to_string("actions/email/event.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=recipients)
    message.attach_alternative(html, "text/html")
    return message


def action_paused_email(
    *, action_name: str, chatbot: str, reason: str, url: str, recipients: list[str]
) -> EmailMultiAlternatives:
    context = {"action_name": action_name, "chatbot": chatbot, "reason": reason, "url": url}
    # Translators: an email subject; the chatbot's name in brackets, then the action's name.
    subject = " ".join(
        (_("[%(chatbot)s] Action paused: %(action)s") % {"chatbot": chatbot, "action": action_name}).split()
    )
    text = render_to_string("actions/email/action_paused.txt", context)
    html = render_to_string("actions/email/action_paused.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=recipients)
    message.attach_alternative(html, "text/html")
    return message
