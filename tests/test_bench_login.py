"""The bench client's agent login is idempotent: a second call (the soak's setup after the bench's own
login, a retry after a failure) signs in only who is missing, so no agent is held twice — the claim
storm's claimers must be distinct users."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bench.httpclient import Agent, HttpConnection, HttpError
from bench.loadbase import Client


@dataclass
class LoginForm:
    """Stands for the server's login form: records whose form was posted; refuses a name once."""

    posted: list[str] = field(default_factory=list)
    refuse_once: set[str] = field(default_factory=set)


@pytest.fixture
def form(monkeypatch: pytest.MonkeyPatch) -> LoginForm:
    form = LoginForm()

    async def login(self: Agent, conn: HttpConnection, password: str) -> None:
        form.posted.append(self.username)
        if self.username in form.refuse_once:
            form.refuse_once.discard(self.username)
            raise HttpError(f"login of {self.username} failed (HTTP 503)")
        self.cookies = {"sessionid": f"s-{self.username}", "csrftoken": "t"}

    monkeypatch.setattr(Agent, "login", login)
    return form


def _client() -> Client:
    return Client({"host": "127.0.0.1", "port": 9, "public_key": "k", "password": "p", "pool_size": 1})


async def test_a_second_login_signs_in_only_who_is_missing(form: LoginForm) -> None:
    client = _client()
    first = await client.cmd_login(["a", "b"])
    again = await client.cmd_login(["a", "b"])
    more = await client.cmd_login(["b", "c", "c"])
    assert (first["agents"], again["agents"], more["agents"]) == (2, 2, 3)
    assert [agent.username for agent in client.agents] == ["a", "b", "c"]
    assert form.posted == ["a", "b", "c"]  # each user's form posted once


async def test_a_login_retried_after_a_failure_resumes_where_it_stopped(form: LoginForm) -> None:
    client = _client()
    form.refuse_once.add("b")
    with pytest.raises(HttpError):
        await client.cmd_login(["a", "b", "c"])
    assert [agent.username for agent in client.agents] == ["a"]
    await client.cmd_login(["a", "b", "c"])
    assert [agent.username for agent in client.agents] == ["a", "b", "c"]
    assert form.posted == ["a", "b", "b", "c"]
