"""Telling open console sockets that their user's access changed: workspaces, and the session itself.

A console socket joins its workspaces' groups when it connects. When a membership is removed (or
moved to another workspace or user), the sockets of the user who lost it are told to re-check, so
a removed agent stops receiving that workspace's frames at once rather than at the next reconnect.

Staff remove members in the Django admin, which deletes rows directly: there is no member-removal
service to call this from, so a ``post_delete``/``post_save`` hook on ``Membership`` is the
notification mechanism. It only publishes a "recheck" nudge after commit; the socket reads the
memberships itself. (``QuerySet.update()`` bypasses the hooks; nothing in the project moves
memberships that way.)

The session a socket was opened with can end while the socket stays open. Deactivating a user and
changing their password (``set_password`` + ``save``, by the user, staff in the admin or a reset
link) publish the same "recheck" nudge: the socket then re-validates its session as an HTTP request
would (``pivra.console.session_validity``) and closes when it would no longer sign the user in.
Logging out publishes "session.ended" with a digest of the session's key, because the nudge can
arrive before ``logout()`` has flushed the session: only the sockets of *that* session close — the
user's other browsers keep their own sessions, as they do for HTTP. Expiry has no event: each socket
re-validates on a timer (``ConsoleConsumer``), and before every client command.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.http import HttpRequest

from chatbots.models import Membership
from pivra.console.session_validity import session_digest
from pivra.realtime import send_on_commit

# The frames a socket gets in its user's group; the consumer handles them and never forwards them.
RECHECK_FRAME = "access.recheck"
SESSION_ENDED_FRAME = "session.ended"
_PREVIOUS = "_pivra_console_previous"
_PREVIOUS_USER = "_pivra_console_previous_user"


def console_user_group(user_id: object) -> str:
    """Every console socket of one user: access changes."""
    return f"console-user.{user_id}"


def console_access_recheck_on_commit(*, user_id: int) -> None:
    """Once the current transaction commits, make the user's console sockets re-check their workspaces."""
    send_on_commit([console_user_group(user_id)], {"type": RECHECK_FRAME})


def console_session_end_on_commit(*, user_id: int, session_key: str) -> None:
    """Once the current transaction commits, close the user's console sockets of this one session."""
    send_on_commit([console_user_group(user_id)], {"type": SESSION_ENDED_FRAME, "session": session_digest(session_key)})


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


def _remember_previous_user(
    sender: type[Any], instance: Any, raw: bool = False, update_fields: frozenset[str] | None = None, **kwargs: Any
) -> None:
    setattr(instance, _PREVIOUS_USER, None)
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"is_active", "password"} & update_fields:
        return  # e.g. last_login on every sign-in: no query for a save that cannot end a session
    previous = sender._default_manager.filter(pk=instance.pk).values_list("is_active", "password").first()
    setattr(instance, _PREVIOUS_USER, previous)


def _after_user_save(sender: type[Any], instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    previous: tuple[bool, str] | None = getattr(instance, _PREVIOUS_USER, None)
    if raw or created or previous is None:
        return
    setattr(instance, _PREVIOUS_USER, None)
    # Only what ends sessions: a deactivation, or a new password hash (which changes the session
    # auth hash). Last-login updates, profile edits and reactivations publish nothing.
    if (previous[0] and not instance.is_active) or previous[1] != instance.password:
        console_access_recheck_on_commit(user_id=instance.pk)
        # Web Push subscriptions end with the sessions they were made under (the app reads users, not the reverse).
        from notifications.subscriptions import push_subscriptions_forget_user

        push_subscriptions_forget_user(user_id=instance.pk)


def _after_user_delete(sender: type[Any], instance: Any, **kwargs: Any) -> None:
    console_access_recheck_on_commit(user_id=instance.pk)


def _after_logout(sender: type[Any], request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and user.pk is not None and session_key:
        console_session_end_on_commit(user_id=user.pk, session_key=session_key)


def connect() -> None:
    """Called once from the app's ``ready()``."""
    user_model = get_user_model()
    pre_save.connect(_remember_previous_user, sender=user_model, dispatch_uid="pivra.console.user_previous")
    post_save.connect(_after_user_save, sender=user_model, dispatch_uid="pivra.console.user_saved")
    post_delete.connect(_after_user_delete, sender=user_model, dispatch_uid="pivra.console.user_deleted")
    user_logged_out.connect(_after_logout, dispatch_uid="pivra.console.logged_out")
    pre_save.connect(_remember_previous, sender=Membership, dispatch_uid="pivra.console.membership_previous")
    post_save.connect(_after_save, sender=Membership, dispatch_uid="pivra.console.membership_saved")
    post_delete.connect(_after_delete, sender=Membership, dispatch_uid="pivra.console.membership_deleted")
