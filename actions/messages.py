"""What an event says to people: the summary shared by emails and Slack messages.

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

from actions.events import DIGEST_TYPE, EventType

TRIGGERS = {"button": "“Talk to a human” button", "keyword": "Trigger keyword"}
# handoff.timed_out without waiting: the request came outside office hours or with nobody online.
SKIPPED_WAIT_INTROS = {
    "after_hours": "The visitor asked for a person outside your office hours, so they saw your offline message "
    "and were asked for a mobile number. A late claim still reaches them.",
    "offline": "The visitor asked for a person while nobody on the team was online, so they saw your offline "
    "message and were asked for a mobile number. A late claim still reaches them.",
}
# handoff.released: why the live conversation went back to the queue (the payload's ``reason``).
RELEASE_INTROS = {
    "released": "{agent} released the conversation; it is waiting for a team member again.",
    "transfer_expired": "The transfer was not accepted in time; the conversation is waiting for a team member again.",
    "transfer_declined": "The colleague declined the transfer; the conversation is waiting for a team member again.",
    "member_removed": "{agent} was removed from the workspace; the conversation is waiting for a team member again.",
    "agent_deactivated": "{agent}'s account was deactivated; the conversation is waiting for a team member again.",
    "agent_deleted": "{agent}'s account was deleted; the conversation is waiting for a team member again.",
    "agent_missing": "The agent is no longer in the workspace; the conversation is waiting for a team member again.",
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
    link_label: str = "Open conversation"


def _when(value: Any) -> str:
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.strftime("%d %b %Y, %H:%M %Z").strip()


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
    chatbot = _text((data.get("chatbot") or {}).get("name"), 80) or "your chatbot"
    agent = _text((handoff.get("claimed_by") or {}).get("name"), 80)

    facts: list[tuple[str, str]] = [("Chatbot", chatbot)]
    if handoff.get("trigger"):
        facts.append(("Trigger", TRIGGERS.get(handoff["trigger"], _text(handoff["trigger"], 40))))
    if visitor.get("current_page"):
        facts.append(("Visitor page", _text(visitor["current_page"])))
    if visitor.get("locale"):
        facts.append(("Visitor language", _text(visitor["locale"], 35)))
    if visitor.get("phone"):
        facts.append(("Mobile number", _text(visitor["phone"], 40)))

    if event_type == EventType.CONVERSATION_ESCALATED:
        title = "New handoff request"
        intro = "A visitor asked to talk to a team member. Claim the conversation in the Handoff tab."
        facts.append(("Requested", _when(handoff.get("requested_at"))))
    elif event_type == EventType.HANDOFF_CLAIMED:
        title = f"Handoff claimed by {agent or 'an agent'}"
        intro = f"{agent or 'An agent'} joined the conversation and is talking to the visitor."
        if data.get("late"):
            intro += " The visitor had already been shown the Team busy message."
        facts.append(("Claimed", _when(handoff.get("claimed_at"))))
    elif event_type == EventType.HANDOFF_TIMED_OUT:
        title = "No one answered in time"
        intro = (
            "Nobody claimed the conversation before the response timeout, so the visitor saw your "
            "Team busy message and was asked for a mobile number. A late claim still reaches them."
        )
        if data.get("reason") in SKIPPED_WAIT_INTROS:
            title = "Handoff request while nobody could answer"
            intro = SKIPPED_WAIT_INTROS[str(data.get("reason"))]
        facts.append(("Timed out", _when(handoff.get("timed_out_at"))))
    elif event_type == EventType.LEAD_CAPTURED:
        title = "Lead captured"
        intro = "The visitor left a mobile number so your team can follow up."
    elif event_type == EventType.HANDOFF_RESOLVED:
        title = "Conversation resolved"
        intro = "The conversation was resolved; its full thread stays in the dashboard."
        if data.get("reason") == "superseded":
            intro = "The request was closed because the visitor asked again from a newer conversation."
        facts.append(("Resolved", _when(handoff.get("resolved_at"))))
    elif event_type == EventType.HANDOFF_TRANSFERRED:
        source = _text((data.get("from_agent") or {}).get("name"), 80)
        target = _text((data.get("to_agent") or {}).get("name"), 80)
        if data.get("take_over"):
            title = f"{target or 'An admin'} took over a conversation"
            intro = f"{target or 'An owner or admin'} took over the live conversation from {source or 'its agent'}."
        else:
            title = f"Conversation transferred to {target or 'a colleague'}"
            intro = (
                f"{source or 'An agent'} transferred the live conversation to {target or 'a colleague'}; "
                "if they don't accept it in time, it goes back to the queue."
            )
        facts.extend([("From", source), ("To", target)])
    elif event_type == EventType.HANDOFF_RELEASED:
        previous = _text((data.get("previous_agent") or {}).get("name"), 80)
        title = "Conversation back in the queue"
        intro = RELEASE_INTROS.get(str(data.get("reason")), "The live conversation went back to the queue.")
        intro = intro.format(agent=previous or "The agent")
        facts.append(("Previous agent", previous))
    elif event_type == EventType.CONVERSATION_RATED:
        rating = data.get("rating") or {}
        rated_agent = _text((data.get("agent") or {}).get("name"), 80)
        title = _rating_title(rating)
        intro = (
            f"The visitor rated the conversation with {rated_agent}."
            if rated_agent
            else "The visitor rated a conversation the AI answered."
        )
        facts.extend([("Agent", rated_agent), ("Comment", _text(rating.get("comment"), 1000))])
    else:
        title = f"Event {_text(event_type, 40)}"
        intro = "Something happened in a conversation."
    url = conversation.get("url")
    return Summary(
        event_type=event_type,
        title=title,
        intro=intro,
        chatbot=chatbot,
        url=str(url) if url else None,
        facts=[(label, value) for label, value in facts if value],
        is_test=is_test,
    )


def _rating_title(rating: dict[str, Any]) -> str:
    score = _number(rating.get("score"))
    if rating.get("scale") == "thumbs":
        return "Visitor rated \U0001f44d" if score >= 4 else "Visitor rated \U0001f44e"
    return f"Visitor rated {score}/5"


DIGEST_NOUNS = {
    EventType.CONVERSATION_ESCALATED.value: ("handoff request", "handoff requests"),
    EventType.LEAD_CAPTURED.value: ("lead", "leads"),
    EventType.CONVERSATION_RATED.value: ("rating", "ratings"),
}


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _digest_summary(data: dict[str, Any], *, is_test: bool) -> Summary:
    """The notifications held back by a chatbot's cap (actions/caps.py), summed up in one message."""
    count, limit, minutes = _number(data.get("count")), _number(data.get("limit")), _number(data.get("window_minutes"))
    one, many = DIGEST_NOUNS.get(str(data.get("event_type")), ("notification", "notifications"))
    noun = one if count == 1 else many
    chatbot = _text((data.get("chatbot") or {}).get("name"), 80) or "your chatbot"
    url = data.get("url")
    return Summary(
        event_type=DIGEST_TYPE,
        title=f"{count} more {noun} in the last {minutes} minutes",
        intro=(
            f"{count} more {noun} came in during the last {minutes} minutes. To keep a flood from burying "
            f"your team, Pivra sends at most {limit} {many} one by one per {minutes} minutes for a chatbot "
            "and sums up the rest here. Every one of them is in the dashboard."
        ),
        chatbot=chatbot,
        url=str(url) if url else None,
        facts=[
            (label, value)
            for label, value in [
                ("Chatbot", chatbot),
                ("From", _when(data.get("window_start"))),
                ("To", _when(data.get("window_end"))),
            ]
            if value
        ],
        is_test=is_test,
        link_label="Open the conversations",
    )


# --- Slack ------------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's three control characters, so visitor text cannot become <!channel> or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(summary: Summary) -> dict[str, Any]:
    prefix = "[Test] " if summary.is_test else ""
    headline = slack_escape(f"{prefix}{summary.title} · {summary.chatbot}")
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
    prefix = "[Test] " if summary.is_test else ""
    subject = " ".join(f"{prefix}[{summary.chatbot}] {summary.title}".split())
    text = render_to_string("actions/email/event.txt", context)
    html = render_to_string("actions/email/event.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=recipients)
    message.attach_alternative(html, "text/html")
    return message


def action_paused_email(
    *, action_name: str, chatbot: str, reason: str, url: str, recipients: list[str]
) -> EmailMultiAlternatives:
    context = {"action_name": action_name, "chatbot": chatbot, "reason": reason, "url": url}
    subject = " ".join(f"[{chatbot}] Action paused: {action_name}".split())
    text = render_to_string("actions/email/action_paused.txt", context)
    html = render_to_string("actions/email/action_paused.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=recipients)
    message.attach_alternative(html, "text/html")
    return message
