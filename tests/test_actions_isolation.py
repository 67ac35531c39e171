"""Deliveries run apart from the product's timers, and the owners' "paused" email outlives a mail
server that refuses at first. The real stack (``pivra.stack.start_app``: daphne, the main worker,
the delivery worker and beat) on the test database and Redis, against real loopback receivers
and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings
from django.db import connection

from actions.models import Delivery
from actions.services import action_pause
from handoff.models import Handoff
from pivra.stack import AppProcesses, free_port, start_app
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request
from tests.stack_waits import wait_showing_logs
from tests.test_actions_support import Receiver, webhook_action

pytestmark = pytest.mark.django_db(transaction=True)

# Long enough that a dead receiver visibly holds its slot for the whole test.
WEBHOOK_TIMEOUT = 60
DEAD_RECEIVERS = 3
MAIN_WORKER_SLOTS = 2  # fewer than the dead receivers: sharing a pool would stall everything


class FlakySmtp:
    """An SMTP handler that answers 451 (try again later) to the next ``refuse`` messages."""

    def __init__(self) -> None:
        self.refuse = 0
        self.tries = 0
        self.messages: list[EmailMessage] = []
        self.port = free_port()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tries += 1
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Try again later"
        self.messages.append(BytesParser(policy=policy.default).parsebytes(envelope.content))
        return "250 Message accepted"


@pytest.fixture(scope="module")
def smtp() -> Iterator[FlakySmtp]:
    handler = FlakySmtp()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    yield handler
    controller.stop()


def _wait(condition: Callable[[], bool], *, seconds: float, what: str, logs: Path) -> None:
    wait_showing_logs(condition, seconds=seconds, what=what, logs=logs, interval=0.25)


@dataclass
class Stack:
    app: AppProcesses
    logs: Path

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.app.http_url}/healthz", timeout=10)

    def health_until(self, status: int, *, what: str, naming: str = "") -> httpx.Response:
        """The first probe answering ``status`` (whose worker check names ``naming``). Each daphne
        process keeps its own worker ping, so the next probe (maybe served by another process) could
        still answer the other way; and on a loaded machine one ping may miss a worker's late reply."""
        probes: list[httpx.Response] = []

        def answered() -> bool:
            probes.append(self.health())
            return probes[-1].status_code == status and naming in str(probes[-1].json()["checks"]["worker"])

        _wait(answered, seconds=60, what=what, logs=self.logs)
        return probes[-1]


@pytest.fixture(scope="module")
def stack(django_db_setup: None, smtp: FlakySmtp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    client = redis_lib.Redis.from_url(django_settings.REDIS_URL)
    client.delete("celery", "ai", "deliveries", "unacked", "unacked_index")  # no leftover task may run here
    client.close()
    db = connection.settings_dict
    database_url = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if connection.vendor != "postgresql":
        database_url = f"sqlite:///{db['NAME']}"
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": database_url,
        "PIVRA_REDIS_URL": django_settings.REDIS_URL,
        "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PIVRA_WEBHOOK_ALLOW_PRIVATE": "true",
        "PIVRA_WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT),
        "PIVRA_EMAIL_HOST": "127.0.0.1",
        "PIVRA_EMAIL_PORT": str(smtp.port),
        "PIVRA_EMAIL_USE_TLS": "false",
        "PIVRA_DB_POOL_MAX": "8",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    logs = tmp_path_factory.mktemp("stack-logs")
    running = Stack(start_app(env=env, port=free_port(), log_dir=logs, worker_concurrency=MAIN_WORKER_SLOTS), logs)
    try:
        _wait(lambda: running.health().status_code == 200, seconds=90, what="a healthy stack", logs=logs)
        yield running
    finally:
        running.app.stop()


def test_dead_receivers_hold_up_neither_a_fast_receiver_nor_the_handoff_timeout(
    personas: Personas, stack: Stack, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    bot = personas.chatbot
    logs = stack.logs
    with ExitStack() as receivers:
        dead = [receivers.enter_context(Receiver(hold_first=True)) for _ in range(DEAD_RECEIVERS)]
        fast = receivers.enter_context(Receiver())
        # Named so the dead ones are fanned out, and queued, before the fast one.
        for number, receiver in enumerate(dead):
            webhook_action(bot, receiver.url, name=f"A dead {number}")
        webhook_action(bot, fast.url, name="Z fast")
        enable_handoff(bot, timeout=5)
        visitor, conversation = new_visitor(bot)
        handoff = request(visitor, conversation)

        def all_done() -> bool:
            return (
                all(receiver.arrived.is_set() for receiver in dead)
                and Delivery.objects.filter(action__name="Z fast", status="succeeded").exists()
                and Handoff.objects.filter(pk=handoff.pk, status=Handoff.Status.BUSY).exists()
            )

        # Well inside the dead receivers' 60 s: in a shared pool neither could happen before one
        # of them timed out and gave its slot back.
        _wait(all_done, seconds=WEBHOOK_TIMEOUT * 0.75, what="the fast delivery and the timeout", logs=logs)
        assert len(fast.completed) == 1
        assert not any(receiver.completed for receiver in dead)
        held = Delivery.objects.filter(action__name__startswith="A dead").values_list("status", flat=True)
        assert list(held) == ["sending"] * DEAD_RECEIVERS  # every dead one was still waiting meanwhile
    # The receivers answered on exit: let every delivery be recorded before the tables are wiped.
    _wait(
        lambda: Delivery.objects.filter(status="succeeded").count() == DEAD_RECEIVERS + 1,
        seconds=30,
        what="the released deliveries",
        logs=logs,
    )


def test_healthz_needs_a_worker_on_each_queue(stack: Stack) -> None:
    # /healthz keeps its worker ping for up to 10 s (pivra/health.py): poll rather than expect the
    # change at the first probe.
    body = stack.health_until(200, what="healthy").json()
    assert set(body["checks"]["worker"]["queues"]) == {"celery", "ai", "deliveries"}
    stack.app.kill("deliveries")
    try:
        down = stack.health_until(503, what="unhealthy for want of deliveries", naming="deliveries")
        assert "deliveries" in down.json()["checks"]["worker"]["error"]
    finally:
        stack.app.start("deliveries")
    _wait(lambda: stack.health().status_code == 200, seconds=60, what="healthy again", logs=stack.logs)


def test_the_owners_email_survives_a_mail_server_that_refuses_at_first(
    personas: Personas, stack: Stack, smtp: FlakySmtp
) -> None:
    action = webhook_action(personas.chatbot, "https://crm.example.com/hooks/pivra")
    tries, received = smtp.tries, len(smtp.messages)
    smtp.refuse = 1
    assert action_pause(action=action, reason="The receiver answered HTTP 410 Gone.", notify_owners=True)
    _wait(lambda: len(smtp.messages) > received, seconds=60, what="the retried email", logs=stack.logs)
    assert smtp.tries - tries == 2  # refused once, then accepted
    (mail,) = smtp.messages[received:]
    assert mail["To"] == personas.owner.email
    assert "Action paused: CRM" in str(mail["Subject"])
