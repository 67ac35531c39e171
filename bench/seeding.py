"""Seeding shared by the bench and the hot-path profile (run in the Django process)."""

from __future__ import annotations

import dataclasses


def seed_waiting_flow(*, chatbot_key: str) -> None:
    """The bench measures pending handoffs (claim storms, timeout precision) with agents that may
    have no console socket open: a request must wait for them, not skip to Team busy because nobody
    is online (the product default since issue 15)."""
    from chatbots.handoff_options import HandoffOptions, chatbot_update_handoff_options
    from chatbots.models import Chatbot

    chatbot = Chatbot.objects.get(public_key=chatbot_key)
    options = dataclasses.replace(HandoffOptions.of(chatbot), skip_wait_when_offline=False)
    chatbot_update_handoff_options(chatbot=chatbot, options=options)
