"""Console pages: the conversation list (Open / Handoff tabs), one conversation, exports, analytics.

Thin: parse, scope to ``request.membership.workspace``, read through selectors. State changes go
through the console API (handoff services); these views never write.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views.decorators.http import require_GET

from chatbots.access import request_membership, workspace_required
from chatbots.presence import workspace_roster
from conversations.export import ExportResponse, export_response
from conversations.models import Conversation
from conversations.notes import notes_for_conversation
from handoff.models import Handoff
from handoff.queue_position import NUMBERED, queue_places
from handoff.state import agent_display_name
from pivra.console import analytics, selectors, thread_labels
from pivra.console.note_thread import thread_with_notes
from pivra.console.satisfaction import satisfaction_context
from pivra.inputs import MAX_ID, parse_int

PAGE_SIZE = 50


def _filters(request: HttpRequest) -> selectors.ConversationFilters:
    workspace_id = request_membership(request).workspace_id
    chatbot_ids = set(selectors.workspace_chatbots(workspace_id=workspace_id).values_list("pk", flat=True))
    return selectors.filters_from_query(request.GET, chatbot_ids=chatbot_ids)


def _row(conversation: Conversation, *, now: datetime) -> dict[str, Any]:
    handoff: Handoff | None = getattr(conversation, "handoff", None)
    badge, tone = selectors.handoff_badge(handoff, conversation_status=conversation.status)
    row: dict[str, Any] = {
        "conversation": conversation,
        "visitor": selectors.visitor_label(conversation),
        "last_text": conversation.last_text or "",  # type: ignore[attr-defined]
        "badge": badge,
        "tone": tone,
        "handoff": handoff,
        "ago": selectors.ago_text(conversation.updated_at, now=now),
        "unread": getattr(conversation, "unread", 0),  # visitor messages this agent has not read
    }
    if handoff is not None:
        row["waiting"] = selectors.duration_text(selectors.waited_seconds(handoff, now=now))
        row["ticking"] = handoff.status in selectors.UNCLAIMED_STATUSES
        row["claimed_by"] = agent_display_name(handoff.claimed_by)
    return row


def _with_queue_positions(rows: list[dict[str, Any]], workspace_id: int, tab: str) -> list[dict[str, Any]]:
    """The Handoff tab shows each waiting visitor's place in line, as their widget does: one query for
    the handoffs on this page only, each counting at most NUMBERED places ahead ("50+ ahead" past it)."""
    if tab != selectors.TAB_HANDOFF:
        return rows
    ids = [row["handoff"].pk for row in rows if row.get("ticking") and row.get("handoff") is not None]
    places = queue_places(workspace_id=workspace_id, handoff_ids=ids)
    for row in rows:
        handoff = row.get("handoff")
        if handoff is None or handoff.pk not in places:
            continue
        place = places[handoff.pk]
        row["position"] = place
        row["position_over"] = NUMBERED if place is None else None
    return rows


def _pager(page: Page[Conversation], filters: selectors.ConversationFilters) -> dict[str, Any] | None:
    """Links to the neighbouring and numbered pages, each keeping the tab, search and filters."""
    if not page.has_other_pages():
        return None

    def query(number: int) -> str:
        return filters.as_query(page=str(number) if number > 1 else "")

    # The Open tab is newest first; the Handoff tab is the queue, longest wait first.
    if filters.tab == selectors.TAB_OPEN:
        newer, older = pgettext("pager", "Newer"), pgettext("pager", "Older")
    else:
        newer, older = pgettext("pager", "Previous"), pgettext("pager", "Next")
    numbers = page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)
    return {
        "previous": (newer, query(page.previous_page_number())) if page.has_previous() else None,
        "next": (older, query(page.next_page_number())) if page.has_next() else None,
        "pages": [
            {"number": n, "query": query(n), "current": n == page.number}
            if isinstance(n, int)
            else {"number": None, "query": "", "current": False}
            for n in numbers
        ],
    }


@require_GET
@workspace_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    workspace_id = request_membership(request).workspace_id
    filters = _filters(request)
    queryset = selectors.conversation_list(workspace_id=workspace_id, filters=filters, user_id=request.user.pk)
    page = Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    context = {
        "nav": "conversations",
        "filters": filters,
        "page": page,
        "rows": _with_queue_positions([_row(c, now=now) for c in page.object_list], workspace_id, filters.tab),
        "counts": selectors.tab_counts(workspace_id=workspace_id),
        "chatbots": selectors.workspace_chatbots(workspace_id=workspace_id),
        "status_choices": selectors.STATUS_CHOICES[filters.tab],
        "tabs": [
            (
                selectors.TAB_OPEN,
                pgettext("conversation tab", "Open"),
                filters.as_query(tab=selectors.TAB_OPEN, status="", page=""),
            ),
            (
                selectors.TAB_HANDOFF,
                pgettext("conversation tab", "Handoff"),
                filters.as_query(tab=selectors.TAB_HANDOFF, status="", page=""),
            ),
        ],
        "export_query": filters.as_query(),
        "pager": _pager(page, filters),
        "now": now,
    }
    # The live list refreshes itself by asking for just this part of the page.
    template = "console/conversations_list.html" if request.GET.get("fragment") else "console/conversations.html"
    if not request.GET.get("fragment"):
        context["roster"] = workspace_roster(workspace_id=workspace_id)  # "Online now" (chatbots/presence.py)
    # A refused filter still shows the page, with the problem named above the list.
    return render(request, template, context, status=400 if filters.problems else 200)


def _conversation_or_404(request: HttpRequest, public_id: uuid.UUID) -> Conversation:
    conversation = selectors.conversation_for_workspace(
        workspace_id=request_membership(request).workspace_id, public_id=public_id
    )
    if conversation is None:
        raise Http404("No such conversation in this workspace.")
    return conversation


def _state(request: HttpRequest, conversation: Conversation) -> dict[str, Any]:
    """Everything on the page that changes with the conversation's state, as JSON-ready data."""
    handoff = selectors.handoff_of(conversation)
    controls = selectors.conversation_controls(conversation=conversation, handoff=handoff, user=request.user)  # type: ignore[arg-type]
    visitor = selectors.visitor_details(conversation.visitor)
    lead = conversation.lead or {}
    return {
        "conversation": str(conversation.public_id),
        "status": conversation.status,
        "status_label": conversation.get_status_display(),
        "last_seq": conversation.last_seq,
        "visitor_seen_seq": conversation.visitor_seen_seq,  # the console's "Seen" (conversations.read_state)
        "controls": controls.as_dict(),
        "handoff": None
        if handoff is None
        else {
            "status": handoff.status,
            "status_label": handoff.get_status_display(),
            "trigger": handoff.get_trigger_display(),
            "requested_at": handoff.requested_at.isoformat(),
            "claimed_at": handoff.claimed_at.isoformat() if handoff.claimed_at else None,
            "claimed_by": agent_display_name(handoff.claimed_by),
            "waited": selectors.duration_text(selectors.waited_seconds(handoff)),
            "ticking": handoff.status in selectors.UNCLAIMED_STATUSES,
        },
        "visitor": {
            **visitor,
            "first_seen_at": visitor["first_seen_at"].isoformat(),
            "last_seen_at": visitor["last_seen_at"].isoformat(),
        },
        "lead": {"phone": lead.get("phone"), "captured_at": lead.get("captured_at")},
    }


@require_GET
@workspace_required
def conversation_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, public_id)
    handoff = selectors.handoff_of(conversation)
    events = list(conversation.events.order_by("seq"))
    context = {
        "nav": "conversations",
        "conversation": conversation,
        "handoff": handoff,
        "visitor_name": selectors.visitor_label(conversation),
        "visitor": selectors.visitor_details(conversation.visitor),
        "lead": conversation.lead or {},
        "controls": selectors.conversation_controls(conversation=conversation, handoff=handoff, user=request.user),  # type: ignore[arg-type]
        "waited": selectors.duration_text(selectors.waited_seconds(handoff)) if handoff else None,
        "ticking": handoff is not None and handoff.status in selectors.UNCLAIMED_STATUSES,
        "thread": thread_with_notes(
            [
                {"event": e, "style": thread_labels.event_style(e), "label": thread_labels.system_label(e)}
                for e in events
            ],
            notes_for_conversation(conversation=conversation),
        ),
        "state": _state(request, conversation),
        "me": agent_display_name(request.user),
        "max_length": settings.MESSAGE_MAX_LENGTH,
        "transfer_seconds": settings.TRANSFER_ACCEPT_SECONDS,
    }
    return render(request, "console/conversation.html", context)


@require_GET
@workspace_required
def conversation_state(request: HttpRequest, public_id: uuid.UUID) -> JsonResponse:
    """The live page re-reads this after a state change (claim, timeout, resolve, lead)."""
    conversation = _conversation_or_404(request, public_id)
    response = JsonResponse(_state(request, conversation))
    response["Cache-Control"] = "no-store"
    return response


def _streamed(response: ExportResponse) -> HttpResponse:
    # workspace_required is typed for HttpResponse; Django serves a streaming response the same way.
    return cast(HttpResponse, response)


@require_GET
@workspace_required
def conversation_export(request: HttpRequest, public_id: uuid.UUID, fmt: str) -> HttpResponse:
    conversation = _conversation_or_404(request, public_id)
    membership = request_membership(request)
    return _streamed(
        export_response(
            Conversation.objects.filter(pk=conversation.pk, chatbot__workspace_id=membership.workspace_id),
            fmt=fmt,
            filename=f"pivra-conversation-{str(conversation.public_id)[:8]}",
            workspace=membership.workspace.name,
        )
    )


@require_GET
@workspace_required
def conversations_export(request: HttpRequest, fmt: str) -> HttpResponse:
    membership = request_membership(request)
    filters = _filters(request)
    if filters.problems:
        # Refused before the stream starts: an error inside a streaming response cannot change its status.
        return HttpResponse(" ".join(filters.problems), status=400, content_type="text/plain; charset=utf-8")
    return _streamed(
        export_response(
            selectors.conversations_filtered(workspace_id=membership.workspace_id, filters=filters),
            fmt=fmt,
            filename=f"pivra-{filters.tab}-conversations-{timezone.localdate():%Y%m%d}",
            workspace=membership.workspace.name,
        )
    )


@require_GET
@workspace_required
def analytics_view(request: HttpRequest) -> HttpResponse:
    membership = request_membership(request)
    raw = request.GET.get("days", "")
    days = parse_int(raw, min_value=0, max_value=MAX_ID) if raw else analytics.DEFAULT_PERIOD
    if days is None:  # not a number at all ("²", "٣", 5,000 digits): refused, not guessed at
        periods = ", ".join(str(p) for p in analytics.PERIODS)
        return HttpResponse(
            _("Pick a period of %(periods)s days.") % {"periods": periods},
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    if days not in analytics.PERIODS:
        days = analytics.DEFAULT_PERIOD  # a number we do not offer (an edited link): the default period
    stats = analytics.handoff_stats(workspace_id=membership.workspace_id, days=days)
    context = {
        **satisfaction_context(workspace_id=membership.workspace_id, start=stats.start, end=stats.end),
        "nav": "analytics",
        "stats": stats,
        "chart": analytics.bar_chart(stats.per_day),
        "periods": analytics.PERIODS,
        "median": selectors.duration_text(stats.median_claim_seconds),
        "p90": selectors.duration_text(stats.p90_claim_seconds),
        "per_day": f"{stats.total / stats.days:.1f}".removesuffix(".0"),
        "timed_out_share": analytics.share_text(stats.timed_out_share),
        "late_claim_share": analytics.share_text(stats.late_claim_share),
    }
    return render(request, "console/analytics.html", context)
