"""Telling open console sockets that their user's workspace access changed.

A console socket joins its workspaces' groups when it connects. When a membership is removed (or
moved to another workspace or user), the sockets of the user who lost it are told to re-check, so
a removed agent stops receiving that workspace's frames at once rather than at the next reconnect.

Staff remove members in the Django admin, which deletes rows directly: there is no member-removal
service to call this from, so a ``post_delete``/``post_save`` hook on ``Membership`` is the
notification mechanism. It only publishes a "recheck" nudge after commit; the socket reads the
memberships itself. (``QuerySet.update()`` bypasses the hooks; nothing in the project moves
memberships that way.)
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save

from chatbots.models import Membership
from pivra.realtime import send_on_commit

# The frame a socket gets in its user's group; the consumer handles it and never forwards it.
RECHECK_FRAME = "access.recheck"
_PREVIOUS = "_pivra_console_previous"


def console_user_group(user_id: object) -> str:
    """Every console socket of one user: access changes."""
    return f"console-user.{user_id}"


def console_access_recheck_on_commit(*, user_id: int) -> None:
    """Once the current transaction commits, make the user's console sockets re-check their workspaces."""
    send_on_commit([console_user_group(user_id)], {"type": RECHECK_FRAME})


def _remember_previous(sender: type[Membership], instance: Membership, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None:
        return
    previous = Membership.objects.filter(pk=instance.pk).values_list("user_id", "workspace_id").first()
    setattr(instance, _PREVIOUS, previous)


def _after_save(
    sender: type[Membership], instance: Membership, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    previous: tuple[int, int] | None = getattr(instance, _PREVIOUS, None)
    if raw or created or previous is None:
        return
    setattr(instance, _PREVIOUS, None)
    if previous != (instance.user_id, instance.workspace_id):
        console_access_recheck_on_commit(user_id=previous[0])


def _after_delete(sender: type[Membership], instance: Membership, **kwargs: Any) -> None:
    console_access_recheck_on_commit(user_id=instance.user_id)


def connect() -> None:
    """Called once from the app's ``ready()``."""
    pre_save.connect(_remember_previous, sender=Membership, dispatch_uid="pivra.console.membership_previous")
    post_save.connect(_after_save, sender=Membership, dispatch_uid="pivra.console.membership_saved")
    post_delete.connect(_after_delete, sender=Membership, dispatch_uid="pivra.console.membership_deleted")
