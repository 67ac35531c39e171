"""Realtime groups and broadcasts. Every broadcast is sent only after the transaction commits."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# Channel-layer message type; consumers implement a handler named ``pivra_event``.
EVENT_TYPE = "pivra.event"


def conversation_group(conversation_id: object) -> str:
    """Agents looking at one conversation."""
    return f"conv.{conversation_id}"


def visitor_group(visitor_id: object) -> str:
    """Every widget socket of one visitor: it hears about all of the visitor's conversations, so a
    late claim of an older conversation reaches the widget wherever the visitor is."""
    return f"visitor.{visitor_id}"


def console_group(workspace_id: object) -> str:
    """Every console socket of one workspace: queue changes and the unclaimed count."""
    return f"console.{workspace_id}"


def send_now_rollback_unsafe(groups: Iterable[str], frame: dict[str, Any]) -> None:
    """Send immediately. Only for frames that describe no stored state (typing, AI token deltas)."""
    layer = get_channel_layer()
    targets = list(groups)
    if layer is None or not targets:
        return
    # One hop into the event loop for all groups: each async_to_sync call costs a thread switch.
    async_to_sync(_send_all)(layer, targets, {"type": EVENT_TYPE, "frame": frame})


async def _send_all(layer: BaseChannelLayer, groups: list[str], message: dict[str, Any]) -> None:
    for group in groups:
        try:
            await layer.group_send(group, message)
        except Exception:  # a broadcast failure must never undo or fail a committed state change
            logger.exception("broadcast to %s failed", group)


def send_on_commit(groups: Iterable[str], frame: dict[str, Any]) -> None:
    """Send once the current transaction commits; nothing is sent for a rolled-back one."""
    targets = list(groups)
    transaction.on_commit(lambda: send_now_rollback_unsafe(targets, frame))
