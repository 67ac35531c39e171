"""Satisfaction on the Analytics page: the visitors' ratings of one workspace's conversations in a
period, split between conversations the AI handled alone and those a person handled (an agent wrote
in them), and per agent (the author of the conversation's last agent message). One grouped query
for the figures and one for the agents' names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Exists, OuterRef, Q, Subquery, Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from conversations.models import Conversation, Event
from handoff.ratings import POSITIVE_MIN
from handoff.state import agent_display_name
from pivra.console.analytics import share_text

FORMER_MEMBER = gettext_lazy("Former member")


@dataclass
class Satisfaction:
    label: str
    rated: int = 0
    positive: int = 0
    score_total: int = 0

    def add(self, *, rated: int, positive: int, score_total: int) -> None:
        self.rated += rated
        self.positive += positive
        self.score_total += score_total

    @property
    def positive_share(self) -> float | None:
        """Share of ratings that are 4-5 stars or a thumbs up."""
        return self.positive / self.rated if self.rated else None

    @property
    def average(self) -> float | None:
        """Mean score on the 1-5 scale (a thumbs up counts 5, a thumbs down 1)."""
        return self.score_total / self.rated if self.rated else None

    @property
    def average_text(self) -> str:
        return "\u2013" if self.average is None else f"{self.average:.1f}"


@dataclass
class SatisfactionStats:
    overall: Satisfaction
    ai_only: Satisfaction
    person: Satisfaction
    agents: list[Satisfaction] = field(default_factory=list)


def satisfaction_stats(*, workspace_id: int, start: datetime, end: datetime) -> SatisfactionStats:
    """Ratings given between ``start`` and ``end`` to the workspace's conversations."""
    # A person handled it when an agent wrote in it; the rating is about the last agent who wrote.
    agent_messages = Event.objects.filter(
        conversation_id=OuterRef("pk"), author=Event.Author.AGENT, kind="message"
    ).order_by("-seq")
    rows = (
        Conversation.objects.filter(chatbot__workspace_id=workspace_id, rated_at__gte=start, rated_at__lte=end)
        .exclude(handoff__resolve_reason="superseded")
        .annotate(person=Exists(agent_messages), last_agent=Subquery(agent_messages.values("agent_id")[:1]))
        .values("person", "last_agent")
        .annotate(
            rated=Count("pk"),
            positive=Count("pk", filter=Q(rating__gte=POSITIVE_MIN)),
            score_total=Sum("rating"),
        )
        .order_by()
    )
    stats = SatisfactionStats(
        overall=Satisfaction(_("All rated conversations")),
        ai_only=Satisfaction(_("AI only")),
        person=Satisfaction(_("Handled by a person")),
    )
    per_agent: dict[int | None, Satisfaction] = {}
    for row in rows:
        figures = {"rated": row["rated"], "positive": row["positive"], "score_total": row["score_total"] or 0}
        stats.overall.add(**figures)
        if not row["person"]:
            stats.ai_only.add(**figures)
            continue
        stats.person.add(**figures)
        agent_id = row["last_agent"]
        per_agent.setdefault(agent_id, Satisfaction(str(FORMER_MEMBER))).add(**figures)
    names = {
        u.pk: agent_display_name(u) or str(FORMER_MEMBER)
        for u in User.objects.filter(pk__in=[k for k in per_agent if k])
    }
    for agent_id, agent in per_agent.items():
        agent.label = names.get(agent_id, str(FORMER_MEMBER)) if agent_id else str(FORMER_MEMBER)
    stats.agents = sorted(per_agent.values(), key=lambda s: (-s.rated, s.label.lower()))
    return stats


def satisfaction_context(*, workspace_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """The Analytics template's satisfaction figures, with the shares written out."""
    stats = satisfaction_stats(workspace_id=workspace_id, start=start, end=end)
    groups = [("ai_only", stats.ai_only), ("person", stats.person), ("overall", stats.overall)]
    return {
        "satisfaction": stats,
        "satisfaction_groups": [
            {"key": key, "row": row, "share": share_text(row.positive_share)} for key, row in groups
        ],
        "satisfaction_agents": [{"row": row, "share": share_text(row.positive_share)} for row in stats.agents],
    }
