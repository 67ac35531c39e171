"""Who is told what: one ``Notice`` per thing that happened, read after it committed.

Every recipient is a member of the conversation's own workspace *now* and an active user, so a
notice can never reach another workspace's agent, nor someone removed since:

- a new handoff request still waiting (``handoff``, never a skip-the-wait Team busy): every member
  except those whose chosen status is Offline — with round robin, only the agent it was offered to
  (when routing found nobody to offer it to, everyone as without it);
- a visitor message in a live chat (``message``): the agent who claimed it;
- an @mention in an internal note (``mention``): the members mentioned, never the note's author.

Texts are plain (the browser shows them as text, never as markup), one line, bounded. A notice keeps
the facts it is worded from (names, the visitor's words: data, never translated); ``Notice.wording()``
words title and body in the active language, so delivery words them once per recipient language
(``notifications.services.notice_deliver``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from chatbots.models import Membership
from conversations.models import Conversation, Event, Note

KINDS = ("handoff", "message", "mention")
TITLE_CHARS = 80
BODY_CHARS = 140
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


@dataclass(frozen=True)
class Notice:
    kind: str
    user_ids: tuple[int, ...]
    workspace_id: int
    conversation_public_id: str
    # What the texts are worded from (names, the visitor's words, …): data, never translated.
    facts: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return open_url(self.conversation_public_id)

    def wording(self) -> tuple[str, str]:
        """(title, body) in the active language, one bounded line each."""
        facts = dict(self.facts)
        if self.kind == "handoff":
            # Translators: a browser notification's title: a visitor waits for an agent, then the chatbot's name.
            title = _("%(visitor)s asks for a person · %(chatbot)s") % {
                "visitor": _visitor_label(facts),
                "chatbot": facts.get("chatbot", ""),
            }
            said = facts.get("said", "")
            body = f"“{one_line(said, BODY_CHARS - 4)}”" if said else _("Waiting in the queue.")
        elif self.kind == "message":
            # Translators: a browser notification's title: the visitor of the agent's live chat sent a message.
            title = _("%(visitor)s wrote") % {"visitor": _visitor_label(facts)}
            body = facts.get("text", "")
        else:
            # Translators: a browser notification's title; the author's name, or "A colleague".
            author = facts.get("author") or _("A colleague")
            title = _("%(author)s mentioned you") % {"author": author}
            body = facts.get("text", "")
        return one_line(title, TITLE_CHARS), one_line(body, BODY_CHARS)

    @property
    def title(self) -> str:
        return self.wording()[0]

    @property
    def body(self) -> str:
        return self.wording()[1]


def open_url(conversation_public_id: str) -> str:
    """Where a click on the notification leads: the conversation, in whichever workspace it is."""
    return f"/dashboard/notifications/open/{conversation_public_id}/"


def one_line(text: str, limit: int) -> str:
    """Control and direction characters out, whitespace collapsed, cut to ``limit`` with an ellipsis."""
    flat = " ".join(_CONTROL.sub(" ", text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _members(workspace_id: int, user_ids: Iterable[int] | None = None) -> QuerySet[Membership]:
    members = Membership.objects.filter(workspace_id=workspace_id, user__is_active=True)
    if user_ids is not None:
        members = members.filter(user_id__in=user_ids)
    return members


def _visitor_facts(conversation: Conversation) -> tuple[tuple[str, str], ...]:
    phone = (conversation.lead or {}).get("phone")
    return (("phone", str(phone)),) if phone else (("visitor", str(conversation.visitor.public_id)[:8]),)


def _visitor_label(facts: dict[str, str]) -> str:
    # Translators: how a notification names a visitor: their mobile number, or the start of their id.
    return _("Visitor %(who)s") % {"who": facts.get("phone") or facts.get("visitor", "")}


def handoff_notice(*, conversation_id: int) -> Notice | None:
    """A visitor asked for a person and waits: told to the workspace's members who are not Offline, or
    to the one agent round robin offered it to."""
    from handoff.models import Handoff
    from handoff.transitions.offers import KIND_ROUTE

    conversation = Conversation.objects.select_related("chatbot", "visitor").filter(pk=conversation_id).first()
    if conversation is None:
        return None
    waiting = Handoff.objects.filter(conversation_id=conversation_id, status=Handoff.Status.PENDING).first()
    if waiting is None:  # Team busy, claimed, resolved or withdrawn before the worker got here: nothing to tell
        return None
    workspace_id = conversation.chatbot.workspace_id
    users = _members(workspace_id).exclude(availability=Membership.Availability.OFFLINE)
    if waiting.offered_to_id is not None and waiting.offer_kind == KIND_ROUTE:
        # Round robin offered it to one agent (routing runs before this notice is queued): only them.
        users = users.filter(user_id=waiting.offered_to_id)
    said = (
        Event.objects.filter(conversation_id=conversation_id, kind="message", author=Event.Author.VISITOR)
        .order_by("-seq")
        .values_list("text", flat=True)
        .first()
    )
    return Notice(
        kind="handoff",
        user_ids=tuple(sorted(users.values_list("user_id", flat=True))),
        workspace_id=workspace_id,
        conversation_public_id=str(conversation.public_id),
        facts=(*_visitor_facts(conversation), ("chatbot", conversation.chatbot.name), ("said", said or "")),
    )


def message_notice(*, conversation_id: int, event_id: int) -> Notice | None:
    """A visitor wrote in a live chat: told to the agent who holds it, while they still may."""
    from handoff.models import Handoff

    event = (
        Event.objects.select_related("conversation__chatbot", "conversation__visitor")
        .filter(pk=event_id, conversation_id=conversation_id, kind="message", author=Event.Author.VISITOR)
        .first()
    )
    if event is None:
        return None
    conversation = event.conversation
    workspace_id = conversation.chatbot.workspace_id
    agent_id = (
        Handoff.objects.filter(conversation_id=conversation_id, status=Handoff.Status.ACTIVE)
        .values_list("claimed_by_id", flat=True)
        .first()
    )
    users = list(_members(workspace_id, [agent_id]).values_list("user_id", flat=True)) if agent_id else []
    if not users:
        return None
    return Notice(
        kind="message",
        user_ids=tuple(users),
        workspace_id=workspace_id,
        conversation_public_id=str(conversation.public_id),
        facts=(*_visitor_facts(conversation), ("text", event.text)),
    )


def mention_notice(*, note_id: int) -> Notice | None:
    """Members @mentioned in an internal note, minus its author."""
    note = Note.objects.select_related("conversation__chatbot").filter(pk=note_id).first()
    if note is None:
        return None
    workspace_id = note.conversation.chatbot.workspace_id
    mentioned = [m for m in (note.mentions or []) if isinstance(m, int) and not isinstance(m, bool)][:50]
    users = _members(workspace_id, mentioned)
    if note.author_id is not None:
        users = users.exclude(user_id=note.author_id)
    user_ids = tuple(sorted(users.values_list("user_id", flat=True)))
    if not user_ids:
        return None
    return Notice(
        kind="mention",
        user_ids=user_ids,
        workspace_id=workspace_id,
        conversation_public_id=str(note.conversation.public_id),
        facts=(("author", note.author_name or ""), ("text", note.text)),
    )


def notice_build(*, kind: str, conversation_id: int, ref_id: int) -> Notice | None:
    """The notice for what happened, or None when nobody is to be told (any more)."""
    if kind == "handoff":
        return handoff_notice(conversation_id=conversation_id)
    if kind == "message":
        return message_notice(conversation_id=conversation_id, event_id=ref_id)
    if kind == "mention":
        return mention_notice(note_id=ref_id)
    raise ValueError(f"unknown notice kind {kind!r}")
