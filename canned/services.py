"""Create, change and delete a workspace's canned replies; the one place their rules live."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from canned.models import CannedReply
from canned.placeholders import KNOWN_PLACEHOLDERS, placeholders_stray_braces, placeholders_unknown
from canned.selectors import CANNED_REPLIES_MAX
from chatbots.models import Workspace
from pivra.errors import Conflict, DomainError, NotFound
from pivra.inputs import has_forbidden

SHORTCUT = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
SHORTCUT_MAX = 40
TITLE_MAX = 120
SHORTCUT_CONSTRAINT = "canned_reply_unique_shortcut"


def canned_text_max() -> int:
    """A reply is inserted into the reply box, so it is bounded as a message is (read at call time)."""
    return int(settings.MESSAGE_MAX_LENGTH)


def _clean(*, shortcut: str, title: str, text: str) -> tuple[str, str, str]:
    shortcut = (shortcut or "").strip().lstrip("/").lower()
    title = (title or "").strip()
    text = (text or "").strip()
    if any(has_forbidden(value) for value in (shortcut, title, text)):
        raise DomainError("invalid_input", _("The reply contains characters that are not allowed."))
    if not SHORTCUT.fullmatch(shortcut):
        raise DomainError(
            "invalid_shortcut",
            _(
                "A shortcut is 1 to %(max)d lower-case letters, digits or dashes, starting with a letter or "
                "digit (e.g. refund-policy)."
            )
            % {"max": SHORTCUT_MAX},
        )
    if len(title) > TITLE_MAX:
        raise DomainError(
            "invalid_title",
            ngettext(
                "A title can be at most %(count)d character long.",
                "A title can be at most %(count)d characters long.",
                TITLE_MAX,
            )
            % {"count": TITLE_MAX},
        )
    if not text:
        raise DomainError("invalid_text", _("Write the reply's text."))
    text_max = canned_text_max()
    if len(text) > text_max:
        raise DomainError(
            "invalid_text",
            ngettext(
                "A reply can be at most %(count)d character long (it has %(length)d).",
                "A reply can be at most %(count)d characters long (it has %(length)d).",
                text_max,
            )
            % {"count": text_max, "length": len(text)},
        )
    known = ", ".join("{{" + name + "}}" for name in KNOWN_PLACEHOLDERS)
    unknown = placeholders_unknown(text)
    if unknown:
        names = ", ".join("{{" + name + "}}" for name in unknown[:5])
        raise DomainError(
            "unknown_placeholder",
            _("Unknown placeholder %(names)s. You can use %(known)s.") % {"names": names, "known": known},
        )
    if placeholders_stray_braces(text):  # unclosed, nested or overlong: it would reach the visitor as typed
        raise DomainError(
            "unknown_placeholder",
            _("“{{” and “}}” may only surround a placeholder, written exactly as one of %(known)s.") % {"known": known},
        )
    return shortcut, title, text


def _taken(shortcut: str) -> Conflict:
    return Conflict(
        "shortcut_taken",
        _("/%(shortcut)s is already a reply in this workspace. Choose another shortcut.") % {"shortcut": shortcut},
    )


def _gone() -> NotFound:
    return NotFound(
        "canned_reply_not_found", _("This canned reply was deleted in the meantime. Create it again if you need it.")
    )


def _save(reply: CannedReply, *, workspace_id: int, exclude: int | None) -> CannedReply:
    taken = CannedReply.objects.filter(workspace_id=workspace_id, shortcut=reply.shortcut)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise _taken(reply.shortcut)
    try:
        with transaction.atomic():  # the constraint settles a race between two saves
            # An update never inserts: a reply deleted meanwhile stays deleted.
            reply.save(force_update=exclude is not None)
    except IntegrityError as exc:
        if SHORTCUT_CONSTRAINT not in str(exc):
            raise
        raise _taken(reply.shortcut) from exc
    except DatabaseError as exc:  # "Forced update did not affect any rows."
        if exclude is None or CannedReply.objects.filter(pk=exclude).exists():
            raise
        raise _gone() from exc
    return reply


def canned_reply_create(
    *, workspace: Workspace, shortcut: str, title: str, text: str, created_by: User | None
) -> CannedReply:
    """A new reply; its shortcut is unique in the workspace, its placeholders all known, and the
    workspace holds at most ``CANNED_REPLIES_MAX`` (counted under a lock on the workspace row, so two
    creations at once cannot both pass the count)."""
    shortcut, title, text = _clean(shortcut=shortcut, title=title, text=text)
    with transaction.atomic():
        Workspace.objects.select_for_update().filter(pk=workspace.pk).values_list("pk", flat=True).first()
        if CannedReply.objects.filter(workspace_id=workspace.pk).count() >= CANNED_REPLIES_MAX:
            raise Conflict(
                "too_many_replies",
                ngettext(
                    "A workspace can have at most %(count)d canned reply. Delete one you no longer use.",
                    "A workspace can have at most %(count)d canned replies. Delete one you no longer use.",
                    CANNED_REPLIES_MAX,
                )
                % {"count": CANNED_REPLIES_MAX},
            )
        reply = CannedReply(workspace=workspace, shortcut=shortcut, title=title, text=text, created_by=created_by)
        return _save(reply, workspace_id=workspace.pk, exclude=None)


def canned_reply_update(*, reply: CannedReply, shortcut: str, title: str, text: str) -> CannedReply:
    """Change a reply; one deleted meanwhile is ``canned_reply_not_found`` (404), never re-created."""
    reply.shortcut, reply.title, reply.text = _clean(shortcut=shortcut, title=title, text=text)
    return _save(reply, workspace_id=reply.workspace_id, exclude=reply.pk)


def canned_reply_delete(*, reply: CannedReply) -> None:
    reply.delete()
