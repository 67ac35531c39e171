"""Console reads: the Open and Handoff tabs, one conversation's thread and controls, visitor details.

Every read takes the workspace id and filters by it, so a query can never reach another tenant.
These are console (top-layer) reads, so they may look at handoffs; the services below them never do.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import phonenumbers
from django.contrib.auth.models import User
from django.db.models import Case, Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from chatbots.models import Chatbot, Membership
from conversations.models import Conversation, Event, Visitor
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.offers import offer_blocks_claim
from pivra.console.unread import unread_count
from pivra.inputs import MAX_ID, InvalidInput, clean_text, parse_date, parse_int

TAB_OPEN = "open"
TAB_HANDOFF = "handoff"
TABS = (TAB_OPEN, TAB_HANDOFF)
OPEN_HANDOFF_STATUSES = (Handoff.Status.PENDING, Handoff.Status.BUSY, Handoff.Status.ACTIVE)
UNCLAIMED_STATUSES = (Handoff.Status.PENDING, Handoff.Status.BUSY)
# The status filter offers what each tab can contain.
STATUS_CHOICES: dict[str, list[tuple[str, Any]]] = {
    TAB_OPEN: [("open", gettext_lazy("Open (AI)")), ("closed", gettext_lazy("Closed"))],
    TAB_HANDOFF: [
        ("pending", gettext_lazy("Waiting")),
        ("busy", gettext_lazy("Team busy")),
        ("active", gettext_lazy("Claimed")),
    ],
}
MAX_QUERY_LENGTH = 200


@dataclass(frozen=True)
class ConversationFilters:
    tab: str = TAB_OPEN
    q: str = ""
    status: str = ""
    date_from: date | None = None
    date_to: date | None = None
    chatbot: int | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def active(self) -> bool:
        return bool(self.q or self.status or self.date_from or self.date_to or self.chatbot)

    def as_query(self, **overrides: Any) -> str:
        """The filters as a query string (for tab links, exports and paging)."""
        params = QueryDict(mutable=True)
        values = {
            "tab": self.tab,
            "q": self.q,
            "status": self.status,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "chatbot": str(self.chatbot) if self.chatbot else "",
            **overrides,
        }
        for key, value in values.items():
            if value:
                params[key] = value
        return params.urlencode()


def _parse_date(raw: str, label: str, problems: list[str]) -> date | None:
    try:
        return parse_date(raw, field=label)
    except InvalidInput as exc:
        problems.append(exc.detail)
        return None


def filters_from_query(query: QueryDict, *, chatbot_ids: set[int]) -> ConversationFilters:
    """Parse the list's query string; a bad value is dropped and named in ``problems``, never a 500."""
    problems: list[str] = []
    tab = query.get("tab", TAB_OPEN)
    if tab not in TABS:
        tab = TAB_OPEN
    status = query.get("status", "")
    if status and status not in dict(STATUS_CHOICES[tab]):
        status = ""
    chatbot_raw = query.get("chatbot", "")
    chatbot = parse_int(chatbot_raw, min_value=1, max_value=MAX_ID)
    if chatbot not in chatbot_ids:
        chatbot = None  # another workspace's bot, or no number at all: ignored, never obeyed
    date_from = _parse_date(query.get("from", ""), pgettext("date filter", "From"), problems)
    date_to = _parse_date(query.get("to", ""), pgettext("date filter", "To"), problems)
    if date_from and date_to and date_from > date_to:
        problems.append(_("The date range ends before it starts."))
        date_from, date_to = date_to, date_from
    try:
        # The edge middleware already refuses a NUL; this keeps one from ever reaching a query.
        q = clean_text(" ".join(query.get("q", "").split())[:MAX_QUERY_LENGTH], field=_("Search"))
    except InvalidInput as exc:
        problems.append(exc.detail)
        q = ""
    return ConversationFilters(
        tab=tab,
        q=q,
        status=status,
        date_from=date_from,
        date_to=date_to,
        chatbot=chatbot,
        problems=tuple(problems),
    )


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _last_message_text() -> Subquery:
    latest = Event.objects.filter(conversation=OuterRef("pk"), kind="message").order_by("-seq").values("text")[:1]
    return Subquery(latest)


def _search(queryset: QuerySet[Conversation], q: str) -> QuerySet[Conversation]:
    """Message text, or the visitor's mobile number (typed with or without spaces and +)."""
    matches = Q(Exists(Event.objects.filter(conversation=OuterRef("pk"), text__icontains=q)))
    matches |= Q(lead__phone__icontains=q)
    digits = re.sub(r"\D", "", q)
    if len(digits) >= 4:
        # An E.164 number holds the national digits without the trunk 0: "07911 123456" → "7911123456".
        matches |= Q(lead__phone__icontains=digits.lstrip("0") or digits)
    return queryset.filter(matches)


def conversations_filtered(*, workspace_id: int, filters: ConversationFilters) -> QuerySet[Conversation]:
    """The conversations of one tab with the filters applied, in display order (not yet sliced)."""
    queryset = Conversation.objects.filter(chatbot__workspace_id=workspace_id)
    if filters.tab == TAB_HANDOFF:
        statuses = [filters.status] if filters.status else list(OPEN_HANDOFF_STATUSES)
        queryset = queryset.filter(handoff__status__in=statuses)
    else:
        statuses = [filters.status] if filters.status else [Conversation.Status.OPEN, Conversation.Status.CLOSED]
        # A widget that was opened but never used leaves an empty conversation: nothing to show.
        queryset = queryset.filter(status__in=statuses, last_seq__gt=0)
    if filters.chatbot:
        queryset = queryset.filter(chatbot_id=filters.chatbot)
    if filters.date_from:
        queryset = queryset.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        queryset = queryset.filter(created_at__lt=_day_start(filters.date_to + timedelta(days=1)))
    if filters.q:
        queryset = _search(queryset, filters.q)
    return queryset


def conversation_list(
    *, workspace_id: int, filters: ConversationFilters, user_id: int | None = None
) -> QuerySet[Conversation]:
    """The list's rows; with ``user_id``, each with ``unread``: the visitor messages that user has not read."""
    queryset = (
        conversations_filtered(workspace_id=workspace_id, filters=filters)
        .select_related("chatbot", "visitor", "handoff", "handoff__claimed_by")
        .annotate(last_text=_last_message_text())
    )
    if user_id is not None:
        queryset = queryset.annotate(unread=unread_count(user_id=user_id))
    if filters.tab == TAB_HANDOFF:
        # Unclaimed first, the longest wait on top; then the claimed ones.
        unclaimed_first = Case(
            When(handoff__status__in=UNCLAIMED_STATUSES, then=Value(0)), default=Value(1), output_field=IntegerField()
        )
        return queryset.order_by(unclaimed_first, "handoff__requested_at", "pk")
    return queryset.order_by("-updated_at", "-pk")


def tab_counts(*, workspace_id: int) -> dict[str, int]:
    base = Conversation.objects.filter(chatbot__workspace_id=workspace_id)
    return {
        TAB_OPEN: base.filter(
            status__in=[Conversation.Status.OPEN, Conversation.Status.CLOSED], last_seq__gt=0
        ).count(),
        TAB_HANDOFF: base.filter(handoff__status__in=OPEN_HANDOFF_STATUSES).count(),
    }


def unclaimed_counts(*, workspace_ids: Iterable[int]) -> dict[int, int]:
    """Unclaimed (waiting or team busy) handoffs per workspace, 0 for a workspace with none: the red badge."""
    ids = list(workspace_ids)
    counts = dict.fromkeys(ids, 0)
    rows = (
        Handoff.objects.filter(workspace_id__in=ids, status__in=UNCLAIMED_STATUSES)
        .order_by()
        .values("workspace_id")
        .annotate(n=Count("pk"))
        .values_list("workspace_id", "n")
    )
    counts.update(rows)
    return counts


def unclaimed_count(*, workspace_id: int) -> int:
    return unclaimed_counts(workspace_ids=[workspace_id])[workspace_id]


def conversation_for_workspace(*, workspace_id: int, public_id: uuid.UUID | str) -> Conversation | None:
    """The conversation if it belongs to this workspace; anything else (or a malformed id) is None."""
    try:
        key = uuid.UUID(str(public_id))
    except ValueError:
        return None
    return (
        Conversation.objects.select_related("chatbot", "visitor")
        .filter(public_id=key, chatbot__workspace_id=workspace_id)
        .first()
    )


def handoff_of(conversation: Conversation) -> Handoff | None:
    return (
        Handoff.objects.select_related("claimed_by", "resolved_by", "offered_to", "offered_by")
        .filter(conversation_id=conversation.pk)
        .first()
    )


def workspace_chatbots(*, workspace_id: int) -> QuerySet[Chatbot]:
    return Chatbot.objects.filter(workspace_id=workspace_id).order_by("name")


# --- presentation helpers shared by the list, the thread and the live updates -----------------


def phone_display(e164: str) -> str:
    """``+447911123456`` → ``+44 7911 123456`` (as typed back to the agent, not as stored)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def visitor_label(conversation: Conversation) -> str:
    phone = (conversation.lead or {}).get("phone")
    if phone:
        return phone_display(str(phone))
    return _("Visitor %(id)s") % {"id": str(conversation.visitor.public_id)[:8]}


BUSY_BADGES = {
    "offline": gettext_lazy("Team busy · nobody online"),
    "after_hours": gettext_lazy("Team busy · after hours"),
}


def handoff_badge(handoff: Handoff | None, *, conversation_status: str) -> tuple[str, str]:
    """(text, tone) of the status badge: "Waiting", "Team busy", "Claimed by Alice", "Resolved"…"""
    if handoff is None:
        if conversation_status == Conversation.Status.CLOSED:
            return _("Closed"), "muted"
        return _("With AI"), "info"
    if handoff.status == Handoff.Status.PENDING and handoff.offer_kind == "transfer" and handoff.offered_to_id:
        name = agent_display_name(handoff.offered_to) or _("a colleague")
        return _("Transferring to %(name)s") % {"name": name}, "warn"
    if handoff.status == Handoff.Status.PENDING:
        return _("Waiting"), "warn"
    if handoff.status == Handoff.Status.BUSY:
        # A request that skipped the wait says why: agents see it came after hours or with nobody online.
        return str(BUSY_BADGES.get(handoff.busy_reason, _("Team busy"))), "danger"
    if handoff.status == Handoff.Status.ACTIVE:
        name = agent_display_name(handoff.claimed_by) or _("a former teammate")
        return _("Claimed by %(name)s") % {"name": name}, "ok"
    return _("Resolved"), "muted"


def waited_seconds(handoff: Handoff, *, now: datetime | None = None) -> int:
    end = handoff.claimed_at or handoff.resolved_at or now or timezone.now()
    return max(0, int((end - handoff.requested_at).total_seconds()))


def duration_text(seconds: float | None) -> str:
    """42s, 3m 05s, 2h 04m, 3d 2h: short and stable in width as it ticks."""
    if seconds is None:
        return "\u2013"  # en dash
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def ago_text(moment: datetime, *, now: datetime) -> str:
    """just now, 5 min ago, 3 h ago, 2 days ago, then the date."""
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return _("just now")
    if seconds < 3600:
        minutes = seconds // 60
        return ngettext("%(count)d min ago", "%(count)d min ago", minutes) % {"count": minutes}
    if seconds < 86_400:
        hours = seconds // 3600
        return ngettext("%(count)d h ago", "%(count)d h ago", hours) % {"count": hours}
    if seconds < 7 * 86_400:
        days = seconds // 86_400
        return ngettext("%(count)d day ago", "%(count)d days ago", days) % {"count": days}
    return timezone.localtime(moment).strftime("%-d %b %Y")


def page_display(url: str) -> str:
    """A visitor's page without the scheme: ``shop.example/tents``."""
    return re.sub(r"^https?://", "", url or "").rstrip("/")


@dataclass(frozen=True)
class Controls:
    """What the agent may do on a conversation right now, and how the page says so."""

    badge: str
    tone: str
    handoff_status: str | None
    claimed_by: str | None
    can_claim: bool
    can_reply: bool
    can_resolve: bool
    note: str
    # Transfer, release and take-over (handoff/transitions): what this user may do besides claim and reply.
    can_release: bool = False
    can_transfer: bool = False
    can_take_over: bool = False
    offered_to_me: bool = False  # a transfer or routing offer to this user: Claim reads "Accept", with Decline

    def as_dict(self) -> dict[str, Any]:
        return {
            "can_release": self.can_release,
            "can_transfer": self.can_transfer,
            "can_take_over": self.can_take_over,
            "offered_to_me": self.offered_to_me,
            "badge": self.badge,
            "tone": self.tone,
            "handoff_status": self.handoff_status,
            "claimed_by": self.claimed_by,
            "can_claim": self.can_claim,
            "can_reply": self.can_reply,
            "can_resolve": self.can_resolve,
            "note": self.note,
        }


def conversation_controls(*, conversation: Conversation, handoff: Handoff | None, user: User) -> Controls:
    badge, tone = handoff_badge(handoff, conversation_status=conversation.status)
    if handoff is None:
        note = (
            _("This conversation is closed.")
            if conversation.status == Conversation.Status.CLOSED
            else _("The AI is answering this visitor. You can reply once they ask for a team member.")
        )
        return Controls(badge, tone, None, None, False, False, False, note)
    holder = agent_display_name(handoff.claimed_by)
    if handoff.status in UNCLAIMED_STATUSES:
        offer = _offer_controls(handoff=handoff, user=user, badge=badge, tone=tone)
        if offer is not None:
            return offer
        return Controls(
            badge, tone, handoff.status, None, True, False, True, _("Claim this conversation to reply to the visitor.")
        )
    if handoff.status == Handoff.Status.ACTIVE:
        mine = handoff.claimed_by_id == user.pk
        note = (
            ""
            if mine
            else _("%(name)s claimed this conversation, so only they can reply.")
            % {"name": holder or _("Another agent")}
        )
        manager = not mine and _is_manager(user=user, workspace_id=handoff.workspace_id)
        if manager:
            note += " " + _("As an owner or admin you can take it over.")
        return Controls(
            badge,
            tone,
            handoff.status,
            holder,
            False,
            mine,
            mine,
            note.strip(),
            can_release=mine,
            can_transfer=mine,
            can_take_over=manager,
        )
    return Controls(
        badge,
        tone,
        handoff.status,
        holder,
        False,
        False,
        False,
        _("This conversation is resolved. Its full thread is kept here and can be exported."),
    )


def _is_manager(*, user: User, workspace_id: int) -> bool:
    return Membership.objects.filter(
        user=user, workspace_id=workspace_id, role__in=(Membership.Role.OWNER, Membership.Role.ADMIN)
    ).exists()


def _offer_controls(*, handoff: Handoff, user: User, badge: str, tone: str) -> Controls | None:
    """A waiting handoff offered to one agent (a transfer, round robin): only they may claim it."""
    if not offer_blocks_claim(handoff=handoff, agent=user, now=timezone.now()):
        if handoff.offered_to_id != user.pk or handoff.status != Handoff.Status.PENDING:
            return None
        by = agent_display_name(handoff.offered_by)
        note = (
            _("%(name)s transferred this conversation to you. Accept to reply to the visitor, or decline.")
            % {"name": by}
            if by and handoff.offer_kind == "transfer"
            else _("This conversation is offered to you. Accept to reply to the visitor, or decline.")
        )
        return Controls(badge, tone, handoff.status, None, True, False, True, note, offered_to_me=True)
    offered = agent_display_name(handoff.offered_to) or _("a colleague")
    note = _("Offered to %(name)s right now; anyone can claim it if they don't accept in time.") % {"name": offered}
    return Controls(badge, tone, handoff.status, None, False, False, True, note)


_BROWSERS = (
    # Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari".
    ("Edge", r"Edg(?:e|A|iOS)?/(\d+)"),
    ("Opera", r"(?:OPR|Opera)/(\d+)"),
    ("Samsung Internet", r"SamsungBrowser/(\d+)"),
    ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"),
    ("Chrome", r"(?:Chrome|CriOS)/(\d+)"),
    ("Safari", r"Version/(\d+)[\d.]* .*Safari/"),
)
_SYSTEMS = (
    ("iOS", r"iPhone|iPad|iPod"),
    ("Android", r"Android"),
    ("Windows", r"Windows"),
    ("ChromeOS", r"CrOS"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("Linux", r"Linux"),
)


def browser_from_user_agent(user_agent: str) -> str:
    """``"Chrome 126 on macOS"`` from a User-Agent header; empty when nothing is recognisable."""
    if not user_agent:
        return ""
    browser = ""
    for name, pattern in _BROWSERS:
        found = re.search(pattern, user_agent)
        if found:
            browser = f"{name} {found.group(1)}"
            break
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, user_agent)), "")
    if browser and system:
        # Translators: a visitor's browser and operating system, e.g. "Firefox 128 on Windows".
        return _("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    return browser or system or _("Unknown browser")


def visitor_details(visitor: Visitor) -> dict[str, Any]:
    return {
        "id": str(visitor.public_id),
        "first_seen_at": visitor.first_seen_at,
        "last_seen_at": visitor.last_seen_at,
        "current_page": visitor.current_page,
        "current_page_display": page_display(visitor.current_page),
        "browser": browser_from_user_agent(visitor.user_agent),
        "user_agent": visitor.user_agent,
        "locale": visitor.locale,
    }
