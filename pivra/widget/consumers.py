"""The widget's WebSocket: one per open widget, joined to its visitor's group. Thin: it parses
frames, checks the visitor, and calls the same operations as the HTTP API."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext
from pydantic import ValidationError

from pivra.console.command_pool import TokenBucket
from pivra.errors import DomainError
from pivra.inputs import has_forbidden_in
from pivra.realtime import EVENT_TYPE, visitor_group
from pivra.sockets import SocketConsumer
from pivra.unavailable import RETRY_AFTER_SECONDS, UNAVAILABLE_CODE, UNAVAILABLE_DETAIL, is_unavailable
from pivra.widget import frames, live, operations, survey
from pivra.widget.relay import AiSilence
from pivra.widget.tokens import visitor_from_token

logger = logging.getLogger(__name__)
HELLO_TIMEOUT_SECONDS = 10


class WidgetConsumer(SocketConsumer):
    # Only the visitor's id is kept: thousands of idle sockets each holding a visitor, its chatbot
    # and workspace rows cost about 2 KB apiece, and a frame then sees the chatbot's settings of now,
    # not of when the socket opened (handoff switched off, a plan changed).
    visitor_id: int | None = None
    group: str | None = None
    _hello_timer: asyncio.TimerHandle | None = None
    _typing_budget: TokenBucket | None = None  # made on the first typing frame: idle sockets stay small
    _seen_budget: TokenBucket | None = None  # likewise, on the first seen frame

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._silence = AiSilence()

    async def connect(self) -> None:
        await self.accept()
        loop = asyncio.get_running_loop()
        self._hello_timer = loop.call_later(HELLO_TIMEOUT_SECONDS, lambda: asyncio.ensure_future(self._no_hello()))

    async def _no_hello(self) -> None:
        if self.visitor_id is None:
            await self._error("not_authenticated", "Send a hello frame with your token first.")
            await self.close(code=4401)

    async def disconnect(self, code: int) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def pivra_event(self, message: dict[str, Any]) -> None:
        await self._send(message["frame"])

    async def _send(self, frame: dict[str, Any]) -> None:
        # Every frame passes here, replies and broadcasts alike, so a state in a welcome or a switch
        # silences the AI of its conversation as surely as a broadcast state frame does.
        if self._silence.allows(frame):
            await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def _error(self, code: str, detail: str, **extra: Any) -> None:
        await self._send({"type": "error", "code": code, "detail": detail, **{k: v for k, v in extra.items() if v}})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error("invalid_frame", "Frames must be JSON text.")
            return
        if len(text_data.encode()) > settings.WIDGET_MAX_FRAME_BYTES:
            await self._error("frame_too_large", f"Frames can be at most {settings.WIDGET_MAX_FRAME_BYTES} bytes.")
            return
        try:
            raw = json.loads(text_data)
        except (ValueError, RecursionError):  # not JSON, a number over 4,300 digits, or ~1,000 nested arrays
            await self._error("invalid_json", "That frame is not valid JSON.")
            return
        if has_forbidden_in(raw):  # NUL or a lone surrogate: no text column can store it
            await self._error("invalid_input", "The frame contains characters that are not allowed.")
            return
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            await self._error("invalid_frame", 'A frame is a JSON object with a "type".')
            return
        if raw["type"] not in frames.KNOWN_TYPES:
            await self._error("unknown_type", f"Unknown frame type {raw['type'][:40]!r}.")
            return
        client_id = raw.get("client_id") if isinstance(raw.get("client_id"), str) else None
        try:
            frame = frames.client_frame_adapter.validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
            await self._error("invalid_input", problems or "Invalid frame.", client_id=client_id)
            return
        if self.visitor_id is None and not isinstance(frame, frames.Hello):
            await self._error("not_authenticated", "Send a hello frame with your token first.", client_id=client_id)
            return
        try:
            await self._dispatch(frame)
        except DomainError as exc:
            await self._error(exc.code, exc.detail, client_id=client_id, retry_after=getattr(exc, "retry_after", None))
        except Exception as exc:  # never crash the socket on one bad frame
            if is_unavailable(exc):
                # Redis is away: nothing was stored (the rate limit is checked first). The client keeps
                # the action pending; SocketConsumer closes with 4503 and the client resends after its
                # reconnect, with the same client_id.
                await self._error(
                    UNAVAILABLE_CODE, gettext(UNAVAILABLE_DETAIL), client_id=client_id, retry_after=RETRY_AFTER_SECONDS
                )
                raise
            logger.exception("widget frame %s failed", raw["type"])
            await self._error("server_error", gettext("Something went wrong. Please try again."), client_id=client_id)

    @property
    def _ip(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def _run(self, operation: Callable[..., Any], **kwargs: Any) -> Any:
        """Run one visitor operation on the database thread, with the visitor loaded fresh."""
        visitor_id = self.visitor_id

        def call() -> Any:
            visitor = operations.widget_visitor(visitor_id=visitor_id) if visitor_id is not None else None
            if visitor is None:
                raise DomainError(
                    "not_authenticated", gettext("This visitor no longer exists. Start a new session."), status=401
                )
            # Refusal details in the visitor's language (issue 17): the socket has no LocaleMiddleware.
            with translation.override(operations.visitor_language(visitor=visitor)):
                return operation(visitor=visitor, **kwargs)

        return await database_sync_to_async(call)()

    async def _dispatch(self, frame: Any) -> None:
        if isinstance(frame, frames.Hello):
            await self._hello(frame)
        elif isinstance(frame, frames.Ping):
            await self._send({"type": "pong"})
        elif self.visitor_id is None:
            return
        elif isinstance(frame, frames.Message):
            ack = await self._run(operations.widget_message, client_id=frame.client_id, text=frame.text, ip=self._ip)
            await self._send({"type": "ack", **ack})
        elif isinstance(frame, frames.HandoffRequest):
            ack = await self._run(operations.widget_handoff, client_id=frame.client_id, ip=self._ip)
            await self._send({"type": "ack", "client_id": ack["client_id"], "seq": ack["seq"]})
        elif isinstance(frame, frames.OfferReply):
            ack = await self._run(
                operations.widget_offer_reply,
                client_id=frame.client_id,
                offer_seq=frame.offer_seq,
                accept=frame.accept,
                ip=self._ip,
            )
            await self._send({"type": "ack", "client_id": ack["client_id"], "seq": ack["seq"]})
        elif isinstance(frame, frames.Lead):
            ack = await self._run(
                operations.widget_lead, client_id=frame.client_id, phone=frame.phone, locale=frame.locale, ip=self._ip
            )
            await self._send({"type": "ack", "client_id": ack["client_id"], "seq": ack["seq"]})
        elif isinstance(frame, frames.ContinueWithAI):
            reply = await self._run(operations.widget_continue, client_id=frame.client_id, ip=self._ip)
            await self._send({"type": "switch", **reply})
        elif isinstance(frame, frames.NewConversation):
            reply = await self._run(operations.widget_new_conversation, client_id=frame.client_id, ip=self._ip)
            await self._send({"type": "switch", **reply})
        elif isinstance(frame, frames.Page):
            await self._run(operations.widget_page, url=frame.url, ip=self._ip)
        elif isinstance(frame, frames.Typing | frames.Seen):  # never answered (pivra.widget.live)
            await self._live_mark(frame)
        elif isinstance(frame, frames.Rate):
            ack = await self._run(
                survey.widget_rate,
                client_id=frame.client_id,
                score=frame.score,
                comment=frame.comment,
                conversation=frame.conversation,
                ip=self._ip,
            )
            await self._send({"type": "ack", "client_id": ack["client_id"], "seq": ack["seq"]})
        elif isinstance(frame, frames.Transcript):
            sent = await self._run(
                survey.widget_transcript,
                client_id=frame.client_id,
                email=frame.email,
                conversation=frame.conversation,
                ip=self._ip,
            )
            await self._send({"type": "ack", **sent})
        elif isinstance(frame, frames.EndChat):
            ended = await self._run(
                survey.widget_end_chat, client_id=frame.client_id, conversation=frame.conversation, ip=self._ip
            )
            await self._send({"type": "ack", "client_id": ended["client_id"], "seq": ended["seq"]})

    async def _live_mark(self, frame: frames.Typing | frames.Seen) -> None:
        """``typing`` or ``seen``: never answered, so a background mark can never put an error notice in
        front of the visitor. A failed one is logged by its type (never the text) and dropped; PostgreSQL or
        Redis out of reach is raised (the socket closes with 4503 and the widget reconnects)."""
        try:
            await (self._typing(frame) if isinstance(frame, frames.Typing) else self._seen(frame))
        except Exception as exc:
            if is_unavailable(exc):
                raise
            logger.warning("widget %s frame failed: %s", frame.type, type(exc).__name__)

    async def _typing(self, frame: frames.Typing) -> None:
        """Relay to the agents watching, never stored. Over this socket's budget, or the visitor's or the
        IP's shared with every socket and the HTTP twin (one database call), dropped unanswered."""
        self._typing_budget = self._typing_budget or live.typing_bucket()
        if not self._typing_budget.take() or self.visitor_id is None:
            return
        found = await database_sync_to_async(live.widget_typing_admitted)(
            visitor_id=self.visitor_id, conversation=frame.conversation, on=frame.on, text=frame.text, ip=self._ip
        )
        if found is not None:
            await self.channel_layer.group_send(found[0], {"type": EVENT_TYPE, "frame": found[1]})

    async def _seen(self, frame: frames.Seen) -> None:
        """One guarded write by the visitor's pk (no visitor load); over this socket's budget, dropped."""
        self._seen_budget = self._seen_budget or live.seen_bucket()
        if not self._seen_budget.take() or self.visitor_id is None:
            return
        await database_sync_to_async(live.widget_seen)(
            visitor_id=self.visitor_id, conversation=frame.conversation, seq=frame.seq, ip=self._ip
        )

    async def _hello(self, frame: frames.Hello) -> None:
        # The hello came in time: the timer is about a client that never says hello, not about a
        # lookup that waits its turn for the database thread (a restarted daphne with every widget
        # reconnecting at once takes longer than the timer, and a 4401 would make each of them
        # renew its session and, after three, give up).
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        visitor = await database_sync_to_async(visitor_from_token)(frame.token)
        if visitor is None:
            await self._error("not_authenticated", "This token is not valid. Start a new session.")
            await self.close(code=4401)
            return
        if self.group is not None and self.visitor_id is not None and self.visitor_id != visitor.pk:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.visitor_id = visitor.pk
        self.group = visitor_group(visitor.public_id)
        # Join before reading what was missed: an event committed in between arrives twice at
        # worst, and the client drops duplicates by seq; joining after could lose it.
        await self.channel_layer.group_add(self.group, self.channel_name)
        state, missed, resync = await database_sync_to_async(operations.widget_replay)(
            visitor=visitor, conversation=frame.conversation, last_seq=frame.last_seq
        )
        await self._send({"type": "welcome", "state": state})
        if resync:
            await self._send({"type": "resync", "state": state})
            return
        for event in missed:
            await self._send(event)
