"""The console's WebSocket: one per open console page of a signed-in agent.

It joins the console group of every workspace the agent belongs to (queue changes, unclaimed
counts, events of handoff conversations) and, on request, one conversation's group, replaying what
the page missed from the database first, so a reconnect resumes without a gap. Thin: it parses
frames, checks membership on every watch, and reads; its two writes, reply and claim, are the
console API's services.

Access is re-checked while the socket is open, not only at connect: when one of the user's
memberships is removed or moved (``pivra.console.revocation``), the socket drops the groups of every
workspace the user has left and tells the page with ``revoked``; with no workspace left it closes.
The session is re-checked too (``pivra.console.session_validity``): on a deactivation or password
change (the same nudge), on logout of its own session, before every client command but typing
and read, every ``SESSION_RECHECK_SECONDS`` and at the session's expiry. An ended session gets ``session.ended``
and close code 4401, and is never answered or fed again; a socket opened without a valid session
is accepted only to be closed the same way, since a browser cannot read a refused handshake's status.
The user's group is joined *before* the session is first checked, so an end committed during the
handshake is either seen by that check or heard as a nudge afterwards, never missed.

The check fails closed: one failed check (database or session store down) is tolerated and retried
after ``SESSION_RETRY_SECONDS``; the ``SESSION_CHECK_FAILURES_TOLERATED + 1``-th failure in a row, or
no successful check for ``SESSION_UNVERIFIED_MAX_SECONDS``, closes the socket with 4503. Nothing
reaches the page while its session has gone unverified that long. 4503 is not final for the page: it
reconnects later, and the new handshake authenticates it again.

Client → server commands ``reply``, ``claim``, ``release``, ``transfer``, ``take_over``, ``accept`` (a claim),
``decline`` and ``note`` do what the console API does (``pivra.console.commands``:
the same services and answers) and are answered with ``ack`` or ``error``, each with the frame's
``client_id``; they spare the HTTP parse, middleware, session load and CSRF check of a request.
Where they run and how many may (a flood is answered ``rate_limited``): ``pivra.console.command_pool``.
``typing`` and ``read`` are never answered, each within its own budget and without the per-frame
session check (their statements re-check claim and membership; ``pivra.console.live_marks``).

Server → client frames: ``welcome``, ``queue``, ``event``, ``watching``, ``resync``, ``revoked``,
``session.ended``, ``pong``, ``ack``, ``error``; in the user's own group, ``offer``, ``offer.ended`` and
``taken_over`` (``handoff.transitions.offers`` / ``takeover``), ``note.mention`` (``conversations.notes``; and
``note`` to a conversation's watchers); ``presence`` when a member's status in a
workspace may have changed (``chatbots.availability``). Frames about a conversation carry its
``workspace`` id, so a page of one workspace can ignore another's.

Each socket also holds a presence lease per workspace (``pivra.console.presence_leases``): opened at
connect, refreshed while it lives, released at close; it is what makes its agent Online. A user holds
at most ``chatbots.presence.MAX_SOCKETS_PER_USER`` console sockets: one more is accepted only to be
closed with 4429, which the page explains (too many tabs) and does not retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext_noop
from pydantic import ValidationError

from accounts.languages import agent_language
from chatbots.languages import accept_language_codes, supported_language
from chatbots.models import Membership
from conversations.frames import event_frame
from conversations.models import Conversation, Event
from pivra.console import frames
from pivra.console.command_pool import command_bucket, run_command, user_command_slot
from pivra.console.live_marks import LiveMarks
from pivra.console.presence_leases import PresenceLeases
from pivra.console.revocation import RECHECK_FRAME, SESSION_ENDED_FRAME, console_user_group
from pivra.console.selectors import unclaimed_counts
from pivra.console.session_validity import SessionValidity, session_digest, session_validity
from pivra.inputs import has_forbidden_in
from pivra.realtime import console_group, conversation_group
from pivra.sockets import SocketConsumer
from pivra.unavailable import UNAVAILABLE_CODE, UNAVAILABLE_DETAIL, is_unavailable, log_unavailable

logger = logging.getLogger(__name__)
# Events a reconnecting page may get in one go; a longer gap asks it to reload instead.
REPLAY_LIMIT = 500
_WORKSPACE_CACHE_SIZE = 2000
# Close code once the last of the user's workspaces is gone (the "revoked" frame before it reloads the page).
CLOSE_NO_WORKSPACE = 4403
# Close code once the session no longer signs the user in (logout, deactivation, password change, expiry).
CLOSE_SESSION_ENDED = 4401
SESSION_ENDED_DETAIL = gettext_noop("Your session ended. Sign in again.")
SERVER_ERROR_DETAIL = gettext_noop("Something went wrong. Please try again.")
# Expiry and changes no signal reports (a queryset update, a deleted session row) are found by this
# re-check; event-driven ends arrive at once. Consoles are few, so a read per socket per half-minute is cheap.
SESSION_RECHECK_SECONDS = 30.0
# Close code when the user already holds ``chatbots.presence.MAX_SOCKETS_PER_USER`` console sockets:
# final for the page, which says to close some tabs (each socket costs presence refreshes in Redis).
CLOSE_TOO_MANY_SOCKETS = 4429
# Close code while the session cannot be verified (the store is failing): the page reconnects later.
CLOSE_SESSION_UNVERIFIED = 4503
# Failed checks in a row that are tolerated (a blip), the next one closes; retried this much sooner.
SESSION_CHECK_FAILURES_TOLERATED = 2
SESSION_RETRY_SECONDS = 5.0
# The longest a socket is fed without a successful check (a hanging store never returns a failure).
SESSION_UNVERIFIED_MAX_SECONDS = 60.0


def _workspace_ids(user_id: int) -> frozenset[int]:
    return frozenset(Membership.objects.filter(user_id=user_id).values_list("workspace_id", flat=True))


def _browser_language(scope: dict[str, Any]) -> str:
    """The first language of the handshake's ``Accept-Language`` that Pivra speaks, or ""."""
    header = dict(scope.get("headers") or []).get(b"accept-language", b"")
    for code in accept_language_codes(header.decode("latin-1")):
        if language := supported_language(code):
            return language
    return ""


def _workspaces(user_id: int) -> dict[int, int]:
    """The user's workspaces, each with its count of unclaimed handoffs."""
    return unclaimed_counts(workspace_ids=_workspace_ids(user_id))


def _watchable(user_id: int, public_id: str) -> tuple[int, int] | None:
    """(conversation pk, workspace id) when the user is a member of its workspace *now*."""
    row = (
        Conversation.objects.filter(
            public_id=public_id,
            chatbot__workspace_id__in=Membership.objects.filter(user_id=user_id).values("workspace_id"),
        )
        .values_list("pk", "chatbot__workspace_id")
        .first()
    )
    return (row[0], row[1]) if row else None


def _replay(conversation_pk: int, last_seq: int) -> tuple[int, list[dict[str, Any]] | None]:
    """(the conversation's last seq, the events after ``last_seq``, or None when the gap is too long)."""
    conversation = Conversation.objects.get(pk=conversation_pk)
    if conversation.last_seq - last_seq > REPLAY_LIMIT:
        return conversation.last_seq, None
    events = Event.objects.filter(conversation=conversation, seq__gt=last_seq).order_by("seq")
    return conversation.last_seq, [event_frame(e, conversation, team=True) for e in events]


def _workspace_of(public_id: str) -> int | None:
    return Conversation.objects.filter(public_id=public_id).values_list("chatbot__workspace_id", flat=True).first()


class ConsoleConsumer(SocketConsumer):
    user_id: int | None = None
    session_key: str | None = None
    workspace_ids: frozenset[int] = frozenset()
    watching: str | None = None
    watching_workspace: int | None = None
    ended = False
    _session_timer: asyncio.Task[None] | None = None
    _failed_checks = 0
    _verified_at = 0.0  # time.monotonic() of the last successful session check
    _presence: PresenceLeases | None = None
    _language = ""  # the language of error details (connect sets it)

    async def connect(self) -> None:
        user = self.scope.get("user")
        session = self.scope.get("session")
        # The language of the socket's own error details: the browser's until the agent's choice is read.
        self._language = _browser_language(self.scope)
        if user is None or not user.is_authenticated or session is None:
            await self.accept()  # then closed with a code the page can read, not a bare HTTP 403
            await self._end_session()
            return
        self.user_id = user.pk
        self.session_key = session.session_key
        self._workspace_cache: dict[str, int] = {}
        self._command_budget = command_bucket()
        self._marks = LiveMarks(user_id=user.pk, layer=self.channel_layer)  # typing and read frames
        # Join the user's group before checking the session and reading the memberships: a
        # deactivation, password change, logout or removal committed in between is then heard and
        # re-checked, never missed until the periodic re-check.
        await self.channel_layer.group_add(console_user_group(user.pk), self.channel_name)
        validity = await self._session_validity()  # also its expiry, which the handshake did not read
        if validity is None or not validity.valid:
            await self.accept()
            await (self._end_unverified() if validity is None else self._end_session())
            return
        self._language = await database_sync_to_async(agent_language)(user=user) or self._language
        self._presence = PresenceLeases(layer=self.channel_layer, user_id=user.pk, socket_id=self.channel_name)
        if not await self._presence.admit():
            await self.accept()  # closed with a code the page explains, as the session checks are
            await self._end_too_many_sockets()
            return
        counts = await database_sync_to_async(_workspaces)(user.pk)
        self.workspace_ids = frozenset(counts)
        # Presence (chatbots/presence.py): this socket keeps the agent Online in each of their workspaces.
        # Opened before joining the console groups, so the socket does not hear its own arrival.
        await self._presence.open(self.workspace_ids)
        for workspace_id in self.workspace_ids:
            await self.channel_layer.group_add(console_group(workspace_id), self.channel_name)
        await self.accept()
        await self._send(
            {
                "type": "welcome",
                "workspaces": [{"id": wid, "unclaimed": n} for wid, n in sorted(counts.items())],
            }
        )
        self._session_timer = asyncio.create_task(self._recheck_session_periodically(validity.expires_at))

    async def disconnect(self, code: int) -> None:
        await self._leave_everything()

    async def pivra_event(self, message: dict[str, Any]) -> None:
        if self.ended:
            return  # a frame already on its way when the session ended
        if self._unverified_too_long():
            await self._end_unverified()
            return
        frame: dict[str, Any] = message["frame"]
        if frame.get("type") == RECHECK_FRAME:
            if await self._session_still_valid():
                await self._recheck_access()
            return
        if frame.get("type") == SESSION_ENDED_FRAME:
            if self.session_key is not None and frame.get("session") == session_digest(self.session_key):
                await self._end_session()
            return
        conversation = frame.get("conversation")
        if isinstance(conversation, str):
            workspace_id = await self._workspace_for(conversation)
            if workspace_id not in self.workspace_ids:
                return  # cannot happen through our groups; refuse rather than leak
            frame = {**frame, "workspace": workspace_id}
        await self._send(frame)

    async def _workspace_for(self, conversation: str) -> int | None:
        cached = self._workspace_cache.get(conversation)
        if cached is not None:
            return cached
        workspace_id = await database_sync_to_async(_workspace_of)(conversation)
        if workspace_id is not None:
            if len(self._workspace_cache) >= _WORKSPACE_CACHE_SIZE:
                self._workspace_cache.clear()
            self._workspace_cache[conversation] = workspace_id  # a conversation never changes workspace
        return workspace_id

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    def _words(self, message: str, **values: Any) -> str:
        """``message`` (a msgid marked with gettext_noop) in the socket's language (its agent's chosen
        one, else the browser's: a socket has no LocaleMiddleware), ``values`` filled in."""
        with translation.override(self._language or settings.LANGUAGE_CODE):
            text = translation.gettext(message)
        return text % values if values else text

    async def _error(self, code: str, detail: str, client_id: str | None = None) -> None:
        frame = {"type": "error", "code": code, "detail": detail}
        if client_id is not None:
            frame["client_id"] = client_id
        await self._send(frame)

    async def _command(self, frame: frames.Command) -> None:
        """A reply or a claim, as the console API runs it (``pivra.console.commands``), answered with
        ``ack`` or ``error`` carrying the frame's ``client_id``, on the command threads
        (``pivra.console.command_pool``), within the socket's rate and the user's share of them."""
        if self.ended or self.user_id is None:
            return
        if not self._command_budget.take():  # a flood is refused here, before it reaches the database
            detail = self._words(gettext_noop("You're sending too fast. Wait a moment, then try again."))
            await self._error("rate_limited", detail, frame.client_id)
            return
        try:
            async with user_command_slot(self.user_id):  # one agent's many pages cannot take every thread
                outcome = await run_command(session_key=self.session_key, user_id=self.user_id, frame=frame)
        except Exception as exc:
            if is_unavailable(exc):
                # PostgreSQL out of reach mid-command (or restarting): a pause, answered as HTTP answers
                # it (503 ``unavailable``). The socket stays; the page sends the command again with the
                # same client_id, and a reply that did commit is found by it, stored once.
                log_unavailable("console command", exc)
                await self._error(UNAVAILABLE_CODE, self._words(UNAVAILABLE_DETAIL), frame.client_id)
                return
            logger.exception("console %s failed", frame.type)
            await self._error("server_error", self._words(SERVER_ERROR_DETAIL), frame.client_id)
            return
        if outcome.validity is None:  # the command's thread logged why
            self._failed_checks += 1
            if self._unverified_too_long():
                await self._end_unverified()
            else:  # the command did not run: the page re-sends it with the same client_id
                await self._error(UNAVAILABLE_CODE, self._words(UNAVAILABLE_DETAIL), frame.client_id)
            return
        self._failed_checks = 0
        self._verified_at = time.monotonic()
        if not outcome.validity.valid:
            await self._end_session()
            return
        if outcome.answer is not None:
            await self._send(outcome.answer)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.ended:
            return
        if text_data is None:
            await self._error("invalid_frame", self._words(gettext_noop("Frames must be JSON text.")))
            return
        size = len(text_data.encode())
        largest = frames.max_frame_bytes("reply")
        if size > largest:  # not parsed: the client id, if any, is found in the text
            detail = self._words(gettext_noop("Frames can be at most %(bytes)s bytes."), bytes=largest)
            await self._error("frame_too_large", detail, frames.client_id_in_text(text_data))
            return
        try:
            raw = json.loads(text_data)
        except (ValueError, RecursionError):  # not JSON, a number over 4,300 digits, or ~1,000 nested arrays
            await self._error("invalid_json", self._words(gettext_noop("That frame is not valid JSON.")))
            return
        frame_type = str(raw.get("type"))[:40] if isinstance(raw, dict) else ""
        if size > (limit := frames.max_frame_bytes(frame_type)):
            # Translators: %(type)s is a frame's machine type in quotes, e.g. 'reply' (never translated).
            detail = self._words(
                gettext_noop("A %(type)s frame can be at most %(bytes)s bytes."),
                type=repr(frame_type or "frame"),
                bytes=limit,
            )
            await self._error("frame_too_large", detail, frames.client_id_of(raw))
            return
        if has_forbidden_in(raw):  # NUL or a lone surrogate: no text column can store it
            detail = self._words(gettext_noop("The frame contains characters that are not allowed."))
            await self._error("invalid_input", detail, frames.client_id_of(raw))
            return
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            await self._error("invalid_frame", self._words(gettext_noop('A frame is a JSON object with a "type".')))
            return
        if raw["type"] not in frames.KNOWN_TYPES:
            detail = self._words(gettext_noop("Unknown frame type %(type)s."), type=repr(raw["type"][:40]))
            await self._error("unknown_type", detail)
            return
        try:
            frame = frames.client_frame_adapter.validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
            # The field problems are pydantic's own (English) words, with the field's path.
            detail = problems or self._words(gettext_noop("Invalid frame."))
            await self._error("invalid_input", detail, frames.client_id_of(raw))
            return
        if isinstance(frame, frames.COMMANDS):
            await self._command(frame)  # checks the session itself, in the same database call
            return
        if isinstance(frame, frames.Typing | frames.Read):  # budget first, no session read (live_marks)
            await self._marks.handle(frame)
            return
        # Every command is answered only while the session would still sign the user in.
        if not await self._session_still_valid():
            return
        try:
            if isinstance(frame, frames.Ping):
                await self._send({"type": "pong"})
            elif isinstance(frame, frames.Watch):
                await self._watch(frame)
            elif isinstance(frame, frames.Unwatch):
                await self._unwatch()
        except Exception as exc:  # never crash the socket on one bad frame
            if is_unavailable(exc):
                raise  # Redis is away: SocketConsumer closes with 4503, the page reconnects and watches again
            logger.exception("console frame %s failed", raw["type"])
            await self._error("server_error", self._words(SERVER_ERROR_DETAIL))

    async def _session_still_valid(self) -> bool:
        """Re-validate the socket's session; end the socket and say False when it no longer holds."""
        if self.ended or self.user_id is None:
            return False
        validity = await self._session_validity()
        if validity is None:  # unknown: tolerated for a blip, never for long
            if self._unverified_too_long():
                await self._end_unverified()
                return False
            return True
        if not validity.valid:
            await self._end_session()
        return validity.valid

    async def _session_validity(self) -> SessionValidity | None:
        """The session's validity, or None when it could not be checked (counted as a failure)."""
        assert self.user_id is not None
        try:
            validity = await database_sync_to_async(session_validity)(
                session_key=self.session_key, user_id=self.user_id
            )
        except Exception:  # the database or the session store is down
            self._failed_checks += 1
            logger.warning("could not re-validate the session of a console socket", exc_info=True)
            return None
        self._failed_checks = 0
        self._verified_at = time.monotonic()
        return validity

    def _unverified_too_long(self) -> bool:
        return (
            self._failed_checks > SESSION_CHECK_FAILURES_TOLERATED
            or time.monotonic() - self._verified_at >= SESSION_UNVERIFIED_MAX_SECONDS
        )

    async def _recheck_session_periodically(self, expires_at: datetime | None) -> None:
        """Re-validate every ``SESSION_RECHECK_SECONDS``, and at the session's expiry if sooner."""
        while not self.ended:
            wait = SESSION_RECHECK_SECONDS
            if expires_at is not None:
                wait = min(wait, max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.05)
            if self._failed_checks:
                wait = min(wait, SESSION_RETRY_SECONDS)
            await asyncio.sleep(wait)
            validity = await self._session_validity()
            if validity is None:
                if self._unverified_too_long():
                    await self._end_unverified()
                    return
                continue
            if not validity.valid:
                await self._end_session()
                return
            expires_at = validity.expires_at  # re-read each time: a later request can extend it

    def _stop_session_timer(self) -> None:
        timer, self._session_timer = self._session_timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _end_session(self) -> None:
        """Leave every group first (nothing more reaches this socket), tell the page, then close."""
        if await self._leave_everything():
            # The client may be gone already; the close must still be attempted.
            with contextlib.suppress(Exception):
                await self._send(
                    {"type": SESSION_ENDED_FRAME, "code": "session_ended", "detail": self._words(SESSION_ENDED_DETAIL)}
                )
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_SESSION_ENDED)

    async def _end_unverified(self) -> None:
        """As ``_end_session``, but not final: the page reconnects later and signs in at the handshake."""
        if await self._leave_everything():
            logger.warning("closing a console socket whose session could not be verified")
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_SESSION_UNVERIFIED)

    async def _end_too_many_sockets(self) -> None:
        if await self._leave_everything():
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_TOO_MANY_SOCKETS)

    async def _leave_everything(self) -> bool:
        """Mark the socket ended and leave every group; False when it had ended already."""
        if self.ended:
            return False
        self.ended = True
        self._stop_session_timer()
        if self._presence is not None:
            await self._presence.close()
        if self.user_id is not None:
            await self.channel_layer.group_discard(console_user_group(self.user_id), self.channel_name)
        for workspace_id in self.workspace_ids:
            await self.channel_layer.group_discard(console_group(workspace_id), self.channel_name)
        self.workspace_ids = frozenset()
        await self._unwatch()
        return True

    async def _recheck_access(self) -> None:
        """Leave every workspace the user is no longer a member of; close when none is left."""
        if self.user_id is None:
            return
        current = await database_sync_to_async(_workspace_ids)(self.user_id)
        gone = self.workspace_ids - current
        if not gone:
            return
        # Narrow first: a frame of a lost workspace already on its way is dropped by pivra_event.
        self.workspace_ids = self.workspace_ids & current
        for workspace_id in gone:
            await self.channel_layer.group_discard(console_group(workspace_id), self.channel_name)
        if self._presence is not None:
            await self._presence.drop(gone)
        if self.watching_workspace in gone:
            await self._unwatch()
        await self._send({"type": "revoked", "workspaces": sorted(gone)})
        if not self.workspace_ids:
            await self.close(code=CLOSE_NO_WORKSPACE)

    async def _unwatch(self) -> None:
        if self.watching is not None:
            await self.channel_layer.group_discard(conversation_group(self.watching), self.channel_name)
            self.watching = None
            self.watching_workspace = None

    async def _watch(self, frame: frames.Watch) -> None:
        assert self.user_id is not None
        public_id = str(frame.conversation)
        found = await database_sync_to_async(_watchable)(self.user_id, public_id)
        if found is None:
            await self._error("not_found", self._words(gettext_noop("No such conversation in your workspaces.")))
            return
        conversation_pk, workspace_id = found
        self._workspace_cache[public_id] = workspace_id
        if self.watching != public_id:
            await self._unwatch()
            # Join before reading what was missed: an event committed in between arrives twice at
            # worst (the page drops duplicates by seq); joining after could lose it.
            await self.channel_layer.group_add(conversation_group(public_id), self.channel_name)
            self.watching = public_id
            self.watching_workspace = workspace_id
        last_seq, missed = await database_sync_to_async(_replay)(conversation_pk, frame.last_seq)
        await self._send(
            {"type": "watching", "conversation": public_id, "workspace": workspace_id, "last_seq": last_seq}
        )
        if missed is None:
            await self._send({"type": "resync", "conversation": public_id, "workspace": workspace_id})
            return
        for event in missed:
            await self._send({**event, "workspace": workspace_id})
