"""A worker killed in the middle of a delivery: after a restart the delivery still arrives, with the
same webhook-id. Real Celery workers (subprocesses) on the test database and Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection
from standardwebhooks import Webhook

from actions.models import Delivery, DeliveryAttempt
from pivra.stack import Service, celery_worker_argv, spawn
from tests.factories import Personas
from tests.test_actions_support import Receiver, escalate, webhook_action

pytestmark = pytest.mark.django_db(transaction=True)


def _worker_env() -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PIVRA_REDIS_URL": settings.REDIS_URL,
        "PIVRA_WEBHOOK_ALLOW_PRIVATE": "true",
        "PIVRA_TASK_VISIBILITY_TIMEOUT": "30",
        "PIVRA_DELIVERY_SWEEP_SECONDS": "1",
        "PIVRA_DB_POOL_MAX": "4",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _start_worker(name: str, log_dir: Path, *, with_beat: bool) -> Service:
    # No -Q: a worker started plainly consumes every queue (the default one, ai and deliveries).
    argv = celery_worker_argv(name=f"{name}-{os.getpid()}", queues=None, concurrency=2, loglevel="INFO")
    if with_beat:
        argv += ["--beat", "--schedule", str(log_dir / f"{name}-beat-schedule")]
    return spawn(name, argv, env=_worker_env(), log_file=log_dir / f"{name}.log")


def _purge_broker() -> None:
    """No task left over from earlier tests may reach these workers."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.delete("celery", "ai", "deliveries", "unacked", "unacked_index")
    client.close()


def _wait(condition: object, *, seconds: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
            pytest.fail(f"gave up waiting for {what}\n{tails}")
        time.sleep(0.25)


def test_a_worker_killed_mid_delivery_delivers_after_restart_with_the_same_id(
    personas: Personas, tmp_path: Path, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    _purge_broker()
    with Receiver(hold_first=True) as receiver:
        action = webhook_action(personas.chatbot, receiver.url)
        doomed = _start_worker("doomed", tmp_path, with_beat=False)
        try:
            escalate(personas.chatbot)  # commits: the on-commit dispatch reaches the worker
            _wait(receiver.arrived.is_set, seconds=90, what="the first request", logs=tmp_path)
        finally:
            os.killpg(doomed.process.pid, signal.SIGKILL)  # mid-request: the receiver never answered
            doomed.process.wait(10)
        delivery = Delivery.objects.get()
        assert (delivery.status, delivery.attempts) == ("sending", 1)

        rescuer = _start_worker("rescuer", tmp_path, with_beat=True)
        try:
            _wait(lambda: receiver.completed, seconds=150, what="a completed delivery", logs=tmp_path)
            _wait(
                lambda: Delivery.objects.filter(pk=delivery.pk, status="succeeded").exists(),
                seconds=30,
                what="the delivery to be recorded",
                logs=tmp_path,
            )
        finally:
            rescuer.stop()
        first, *_ = receiver.hits
        (done,) = receiver.completed
    assert done.headers["webhook-id"] == first.headers["webhook-id"] == delivery.webhook_id
    assert done.body == first.body
    Webhook(action.secret).verify(done.body, done.headers)
    outcomes = list(
        DeliveryAttempt.objects.filter(delivery=delivery).order_by("number").values_list("outcome", flat=True)
    )
    assert outcomes[0] == "interrupted" and outcomes[-1] == "succeeded"
