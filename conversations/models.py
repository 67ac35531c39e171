"""Visitors, their conversations, and each conversation's ordered event log."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from chatbots.models import Chatbot


class Visitor(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="visitors")
    locale = models.CharField(max_length=35, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    current_page = models.URLField(max_length=1000, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Visitor {str(self.public_id)[:8]}"


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open (AI)")
        HANDOFF = "handoff", _("Handoff")
        CLOSED = "closed", _("Closed")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="conversations")
    visitor = models.ForeignKey(Visitor, on_delete=models.CASCADE, related_name="conversations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # The highest seq written; the next event takes last_seq + 1 under this row's lock.
    last_seq = models.PositiveIntegerField(default=0)
    lead = models.JSONField(default=dict, blank=True, help_text=_("Lead capture data, e.g. the visitor's mobile."))
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The highest seq the visitor has seen (the widget open and visible): the console's "Seen".
    visitor_seen_seq = models.PositiveIntegerField(default=0)
    # The visitor's answer to "How did we do?" after a resolve (also an event, kind "rating"), kept here
    # too so the Analytics page reads it without scanning events. 1-5; the thumbs scale stores 1 or 5.
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    rating_comment = models.CharField(max_length=1000, blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    # Issue 17: the widget's negotiated language when the conversation began (a code of settings.LANGUAGES;
    # empty for conversations from before). Picks the owner's text variants and the keywords that match.
    language = models.CharField(max_length=10, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["chatbot", "status"], name="conv_chatbot_status"),
            models.Index(fields=["visitor", "-created_at"], name="conv_visitor_recent"),
            # The Analytics page's satisfaction: a workspace's chatbots' ratings in a period.
            models.Index(fields=["chatbot", "rated_at"], condition=Q(rated_at__isnull=False), name="conv_rated"),
        ]

    def __str__(self) -> str:
        return f"Conversation {str(self.public_id)[:8]} ({self.status})"


class Event(models.Model):
    """One entry of a conversation's log: a message or a state change, numbered by ``seq``."""

    class Author(models.TextChoices):
        VISITOR = "visitor", _("Visitor")
        AI = "ai", _("AI")
        AGENT = "agent", _("Agent")
        SYSTEM = "system", _("System")

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=40, default="message")
    author = models.CharField(max_length=10, choices=Author.choices)
    text = models.TextField(blank=True)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent_name = models.CharField(max_length=150, blank=True)
    client_id = models.CharField(max_length=64, null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="event_unique_seq"),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=Q(client_id__isnull=False),
                name="event_unique_client_id",
            ),
        ]
        indexes = [
            # For the push-repair sweep, which looks at the last two minutes of events.
            models.Index(fields=["created_at"], name="event_created"),
            # The Conversations list's unread counts (pivra/console/unread.py): visitor messages after a
            # seq, per conversation, read from this small index alone instead of every event's row.
            models.Index(
                fields=["conversation", "seq"],
                condition=Q(author="visitor", kind="message"),
                name="event_visitor_msg_seq",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind} by {self.author}"


class Note(models.Model):
    """An agent's internal note on a conversation, shown to the workspace's agents in the thread.

    Deliberately not an ``Event``: the visitor's channels (socket, SSE, events API, transcript,
    exports, the AI's context) all read the event log, so a note kept out of it cannot reach them, and
    the visitor's seq stays gap-free."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_name = models.CharField(max_length=150, blank=True)
    text = models.TextField()
    # User ids of the members @mentioned (each is told live).
    mentions = models.JSONField(default=list, blank=True)
    # The conversation's last_seq when the note was written: its place in the thread among the events.
    after_seq = models.PositiveIntegerField(default=0)
    client_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "after_seq", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=Q(client_id__isnull=False),
                name="note_unique_client_id",
            ),
        ]
        indexes = [models.Index(fields=["conversation", "after_seq"], name="note_conversation_seq")]

    def __str__(self) -> str:
        return f"Note after #{self.after_seq} by {self.author_name}"


class ConversationRead(models.Model):
    """How far one agent has read one conversation: its unread count is the visitor messages after it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="reads")
    last_read_seq = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "conversation"], name="conversation_read_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.conversation_id} to #{self.last_read_seq}"
