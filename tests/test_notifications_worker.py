"""Web Push end to end through a real Celery worker: a handoff request and then a visitor message in the
claimed chat reach the agent's loopback push endpoint, aes128gcm-encrypted for that browser's keys and
VAPID-signed with the server's key; another workspace's agent's endpoint is never called."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection

from handoff.transitions.claim import handoff_claim
from notifications.models import PushSubscription
from pivra.stack import Service, celery_worker_argv, spawn
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say
from tests.push_helpers import BrowserKeys, vapid_key_of
from tests.test_actions_support import Receiver, Reply

pytestmark = pytest.mark.django_db(transaction=True)


def _worker(log_dir: Path) -> Service:
    db = connection.settings_dict
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PIVRA_REDIS_URL": settings.REDIS_URL,
        "PIVRA_OUTBOUND_ALLOW_PRIVATE": "true",  # the push endpoint is this test's loopback server
        "PIVRA_DB_POOL_MAX": "4",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    # No -Q: consumes the default queue (agent_notify) and deliveries (push_deliver).
    argv = celery_worker_argv(name=f"push-{os.getpid()}", queues=None, concurrency=2, loglevel="INFO")
    return spawn("push-worker", argv, env=env, log_file=log_dir / "worker.log")


def _wait_for(condition: Any, *, what: str, logs: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}\n{(logs / 'worker.log').read_text()[-4000:]}")
        time.sleep(0.2)


def _subscribe(user: Any, endpoint: str, keys: BrowserKeys) -> None:
    PushSubscription.objects.create(user=user, endpoint=endpoint, p256dh=keys.p256dh, auth=keys.auth)


def test_pushes_reach_the_agents_endpoint_encrypted_through_the_worker(personas: Personas, tmp_path: Path) -> None:
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.delete("celery", "ai", "deliveries", "unacked", "unacked_index")  # nothing left from other tests
    client.close()
    bot = enable_handoff(personas.chatbot)
    teammate_keys, outsider_keys = BrowserKeys(), BrowserKeys()
    with Receiver(Reply(status=201), Reply(status=201)) as receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        _subscribe(personas.teammate, f"{base}/push/teammate", teammate_keys)
        _subscribe(personas.outsider, f"{base}/push/outsider", outsider_keys)
        worker = _worker(tmp_path)
        try:
            visitor, conversation = new_visitor(bot)
            say(visitor, conversation, "My parcel is lost")
            request(visitor, conversation)  # commits: the notice is queued on commit
            _wait_for(lambda: len(receiver.completed) >= 1, what="the handoff push", logs=tmp_path)
            handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
            say(visitor, conversation, "Are you there? <script>")
            _wait_for(lambda: len(receiver.completed) >= 2, what="the message push", logs=tmp_path)
        finally:
            worker.stop()
    assert [hit.path for hit in receiver.hits] == ["/push/teammate", "/push/teammate"]
    handoff, message = (teammate_keys.decrypt(hit.body) for hit in receiver.hits)
    tag = f"pivra-{conversation.public_id}"
    url = f"/dashboard/notifications/open/{conversation.public_id}/"
    assert handoff["kind"] == "handoff" and handoff["title"].endswith("asks for a person · Acme bot")
    assert (handoff["body"], handoff["tag"], handoff["url"]) == ("“My parcel is lost”", tag, url)
    assert message["kind"] == "message" and message["title"].endswith("wrote")
    assert (message["body"], message["tag"]) == ("Are you there? <script>", tag)
    for hit in receiver.hits:
        assert hit.headers["content-encoding"] == "aes128gcm"
        assert vapid_key_of(hit.headers["authorization"]) == settings.VAPID_PUBLIC_KEY
        assert b"parcel" not in hit.body and b"there" not in hit.body
    with pytest.raises(Exception):  # noqa: B017 - encrypted for the teammate's browser only
        outsider_keys.decrypt(receiver.hits[0].body)
