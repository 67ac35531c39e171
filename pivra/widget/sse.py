"""The SSE fallback: the same frames as the socket, resumable with ``Last-Event-ID`` (= seq)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from pivra.channel_layer import UNAVAILABLE_MESSAGE, channel_delete
from pivra.inputs import MAX_SEQ, parse_int
from pivra.realtime import visitor_group
from pivra.unavailable import is_unavailable, log_unavailable
from pivra.widget import operations
from pivra.widget.relay import AiSilence
from pivra.widget.tokens import visitor_from_token

KEEPALIVE_SECONDS: float = 15


def _sse(frame: dict[str, Any]) -> str:
    lines = []
    if frame.get("type") == "event":
        lines.append(f"id: {frame['seq']}")
    lines.append(f"event: {frame.get('type', 'message')}")
    lines.append("data: " + json.dumps(frame, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


async def _leave(layer: Any, group: str, channel: str) -> None:
    """Leave the group and drop the channel, best effort: Redis away may be why the stream ends (the
    layer then forgets the subscriptions instead of failing, pivra.channel_layer)."""
    with contextlib.suppress(Exception):
        await layer.group_discard(group, channel)
    with contextlib.suppress(Exception):
        await channel_delete(layer=layer, channel=channel)


@require_GET
async def stream(request: HttpRequest) -> HttpResponseBase:
    auth = request.headers.get("Authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else None
    visitor = await database_sync_to_async(visitor_from_token)(token)
    if visitor is None:
        return JsonResponse({"code": "not_authenticated", "detail": "Send your visitor token."}, status=401)
    # A seq is a plain non-negative integer; anything else ("²", 5,000 digits) replays from the start.
    last_seq = parse_int(request.headers.get("Last-Event-ID"), min_value=0, max_value=MAX_SEQ) or 0
    conversation = request.GET.get("conversation")
    layer = get_channel_layer()
    assert layer is not None
    # Redis away: this raises and the request answers 503 (pivra.unavailable); the layer keeps nothing.
    channel = await layer.new_channel()
    group = visitor_group(visitor.public_id)
    try:
        # Join before reading the backlog, as the socket does: duplicates are dropped by seq, losses can't be.
        await layer.group_add(group, channel)
        state, missed, resync = await database_sync_to_async(operations.widget_replay)(
            visitor=visitor, conversation=conversation, last_seq=last_seq
        )
    except BaseException:
        await _leave(layer, group, channel)  # then the same 503 (or 500) as above
        raise

    silence = AiSilence()  # as on the socket: no AI token after a state that ended the AI's turn

    async def frames() -> AsyncIterator[str]:
        receiving: asyncio.Future[Any] | None = None
        try:
            yield ": connected\n\n"
            opening = [{"type": "welcome", "state": state}]
            if resync:
                opening.append({"type": "resync", "state": state})
            for frame in [*opening, *missed]:
                if silence.allows(frame):  # always true here; it remembers the welcome's state
                    yield _sse(frame)
            # One receive waits across keepalives, never cancelled before the end: channels-redis's
            # pub/sub layer takes a cancelled receive for the end of the channel (it drops the inbox
            # and unsubscribes), so a frame arriving before the next receive would be lost.
            receiving = asyncio.ensure_future(layer.receive(channel))
            while True:
                done, _ = await asyncio.wait({receiving}, timeout=KEEPALIVE_SECONDS)
                if not done:
                    yield ": keepalive\n\n"
                    continue
                message = receiving.result()
                if message.get("type") == UNAVAILABLE_MESSAGE:
                    return  # Redis went away (pivra.channel_layer): the client reconnects and replays
                receiving = asyncio.ensure_future(layer.receive(channel))
                if silence.allows(message["frame"]):
                    yield _sse(message["frame"])
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log_unavailable("widget stream", exc)  # the stream ends; the client reconnects and replays
        finally:
            if receiving is not None and not receiving.done():
                receiving.cancel()
                with contextlib.suppress(BaseException):
                    await receiving
            await _leave(layer, group, channel)

    response = StreamingHttpResponse(frames(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # proxies must not buffer the stream
    return response
