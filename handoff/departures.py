"""Nobody stranded: when an agent leaves a workspace their live conversations go back to the queue.

Members are removed in the Django admin (a workspace's member inline, the Membership admin and its
bulk delete), users are deactivated or deleted there too, and a user's deletion cascades to their
memberships; there is no service that every one of those paths goes through. So model signals are
the hook, as for the console's access re-check (``pivra.console.revocation``). Each runs inside the
removal's own transaction: the requeue commits with the removal (and rolls back with it), and the
widgets and the Handoff tab hear of it once it commits.

A deletion must requeue *before* the delete: ``Handoff.claimed_by`` is SET NULL, after which nobody
could tell whose conversations they were. ``QuerySet.update()`` bypasses signals; the beat sweep
(``handoffs_requeue_stranded``) catches whatever is left with an agent who cannot act.

Lock order: every hook that is about to change or delete a membership or user row first locks the
handoffs that member holds or is offered (``handoffs_lock_for_member``), as a claim locks the handoff
row before share-locking the membership (``shared.agent_can_act_locked``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.utils import timezone

from chatbots.models import Membership, Workspace
from handoff.models import Handoff
from handoff.transitions.offers import REASON_DECLINED, handoff_offer_end
from handoff.transitions.requeue import (
    REASON_AGENT_DEACTIVATED,
    REASON_AGENT_DELETED,
    REASON_MEMBER_REMOVED,
    handoff_requeue,
)

_PREVIOUS_MEMBER = "_pivra_handoff_previous_member"
_WAS_ACTIVE = "_pivra_handoff_was_active"


def _membership_before(sender: type[Membership], instance: Membership, raw: bool = False, **kwargs: Any) -> None:
    setattr(instance, _PREVIOUS_MEMBER, None)
    if raw or instance.pk is None:
        return
    previous = Membership.objects.filter(pk=instance.pk).values_list("user_id", "workspace_id").first()
    setattr(instance, _PREVIOUS_MEMBER, previous)
    if previous is not None and previous != (instance.user_id, instance.workspace_id):
        # Moving to another user or workspace is the old member leaving: lock before the row changes.
        handoffs_lock_for_member(user_id=previous[0], workspace_id=previous[1])


def _membership_saved(sender: type[Membership], instance: Membership, raw: bool = False, **kwargs: Any) -> None:
    previous: tuple[int, int] | None = getattr(instance, _PREVIOUS_MEMBER, None)
    setattr(instance, _PREVIOUS_MEMBER, None)
    if raw or previous is None or previous == (instance.user_id, instance.workspace_id):
        return
    # The membership moved to another user or workspace: the old member left the old workspace.
    handoffs_requeue_for_member(user_id=previous[0], workspace_id=previous[1], reason=REASON_MEMBER_REMOVED)


def _membership_deleting(sender: type[Membership], instance: Membership, origin: Any = None, **kwargs: Any) -> None:
    origin_model = origin.model if isinstance(origin, QuerySet) else type(origin)
    if origin_model is not Workspace:
        handoffs_lock_for_member(user_id=instance.user_id, workspace_id=instance.workspace_id)


def _membership_deleted(sender: type[Membership], instance: Membership, origin: Any = None, **kwargs: Any) -> None:
    origin_model = origin.model if isinstance(origin, QuerySet) else type(origin)
    if origin_model is Workspace:
        return  # the workspace goes, and its handoffs with it: nothing to return to a queue
    handoffs_requeue_for_member(
        user_id=instance.user_id, workspace_id=instance.workspace_id, reason=REASON_MEMBER_REMOVED
    )


def _user_before(
    sender: type[Any], instance: Any, raw: bool = False, update_fields: frozenset[str] | None = None, **kwargs: Any
) -> None:
    setattr(instance, _WAS_ACTIVE, None)
    if raw or instance.pk is None or instance.is_active:
        return  # only a save that may deactivate reads the stored row (not every last_login update)
    if update_fields is not None and "is_active" not in update_fields:
        return
    was_active = sender._default_manager.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    setattr(instance, _WAS_ACTIVE, was_active)
    if was_active:
        handoffs_lock_for_member(user_id=instance.pk, workspace_id=None)  # before the user row (lock order)


def _user_saved(sender: type[Any], instance: Any, raw: bool = False, **kwargs: Any) -> None:
    was_active = getattr(instance, _WAS_ACTIVE, None)
    setattr(instance, _WAS_ACTIVE, None)
    if not raw and was_active and not instance.is_active:
        handoffs_requeue_for_member(user_id=instance.pk, workspace_id=None, reason=REASON_AGENT_DEACTIVATED)


def _user_deleting(sender: type[Any], instance: Any, **kwargs: Any) -> None:
    handoffs_lock_for_member(user_id=instance.pk, workspace_id=None)
    handoffs_requeue_for_member(user_id=instance.pk, workspace_id=None, reason=REASON_AGENT_DELETED)


def handoffs_lock_for_member(*, user_id: int, workspace_id: int | None) -> None:
    """Lock (FOR UPDATE) the handoffs a departing member holds or is offered, *before* the removal
    touches their membership or user row. A claim takes the handoff row and then share-locks the
    membership (``agent_can_act_locked``); a removal that took the membership first and then waited
    for that handoff (to end an offer the claim is accepting) would deadlock with it. Taken in this
    order, the removal waits for the claim's commit instead and then requeues what it claimed. Only
    inside a transaction (outside one, each statement commits and holds nothing)."""
    if not connection.in_atomic_block:
        return
    mine = Q(status=Handoff.Status.ACTIVE, claimed_by_id=user_id) | Q(offered_to_id=user_id)
    rows = Handoff.objects.select_for_update().filter(mine)
    if workspace_id is not None:
        rows = rows.filter(workspace_id=workspace_id)
    list(rows.order_by("pk").values_list("pk", flat=True))


def handoffs_requeue_for_member(
    *, user_id: int, workspace_id: int | None, reason: str = REASON_MEMBER_REMOVED, actor: User | None = None
) -> int:
    """Return every live conversation the user holds — in one workspace, or in all of them
    (``workspace_id`` None) — to the queue; how many. Called in the transaction that removes the
    member, deactivates or deletes the user (the hooks below), so the visitors see "Waiting for a team
    member…" again as that commits."""
    live = Handoff.objects.filter(status=Handoff.Status.ACTIVE, claimed_by_id=user_id)
    offered = Handoff.objects.filter(offered_to_id=user_id)
    if workspace_id is not None:
        live, offered = live.filter(workspace_id=workspace_id), offered.filter(workspace_id=workspace_id)
    ids = list(live.order_by("pk").values_list("pk", flat=True))
    requeued = sum(handoff_requeue(handoff_id=pk, reason=reason, actor=actor, claimed_by_id=user_id) for pk in ids)
    # A transfer or round-robin offer to them ends now, as if declined (to everyone, or to the next
    # agent), instead of keeping the visitor waiting on someone who left until the offer expires.
    gone = User(pk=user_id)
    for pk in list(offered.order_by("pk").values_list("pk", flat=True)):
        handoff_offer_end(handoff_id=pk, reason=REASON_DECLINED, now=timezone.now(), agent=gone)
    return requeued


def connect() -> None:
    """Called once from the app's ``ready()``."""
    user_model = get_user_model()
    pre_save.connect(_membership_before, sender=Membership, dispatch_uid="pivra.handoff.membership_before")
    post_save.connect(_membership_saved, sender=Membership, dispatch_uid="pivra.handoff.membership_saved")
    pre_delete.connect(_membership_deleting, sender=Membership, dispatch_uid="pivra.handoff.membership_deleting")
    post_delete.connect(_membership_deleted, sender=Membership, dispatch_uid="pivra.handoff.membership_deleted")
    pre_save.connect(_user_before, sender=user_model, dispatch_uid="pivra.handoff.user_before")
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="pivra.handoff.user_saved")
    pre_delete.connect(_user_deleting, sender=user_model, dispatch_uid="pivra.handoff.user_deleting")
