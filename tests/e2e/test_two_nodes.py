"""Two app nodes behind the repo's nginx config (deploy/nginx/pivra.conf, used as it is), sharing the
test database and the session's Redis: node 1 runs everything (web, workers, beat), node 2 only web.

The whole handoff goes through the proxy in Chromium, the visitor's widget socket on node 1 and the
agent's console socket on node 2, as nginx's access log (``$upstream_addr`` per request) proves.
Placement is arranged, not hoped for: node 2 joins after the visitor and a few other visitors are
connected (nginx skips a node that refuses), so ``least_conn`` then sends every new connection,
the agent's, to the emptier node 2."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from playwright.sync_api import Browser, BrowserContext, expect

from chatbots.models import Chatbot
from chatbots.services import chatbot_update_handoff_settings
from conversations.models import Conversation
from handoff.models import Handoff
from pivra.stack import (
    PYTHON,
    ROOT,
    AppProcesses,
    Service,
    ensure_system_programs,
    free_port,
    spawn,
    start_app,
    wait_for_port,
)
from tests.e2e.conftest import ARTIFACTS, screenshot
from tests.e2e.widget_helpers import DEMO_PASSWORD, open_widget, seed_demo, send

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "pivra.conf"
LOGS = ARTIFACTS / "logs" / "two-nodes"
# Sockets already on node 1 when node 2 joins: more than the 6 connections a browser opens to one
# host, so least_conn sends all the agent's, however many are in flight, to node 2.
OTHER_VISITORS = 8
# Generous waits for work another process does (an AI reply, a push through Redis, the timer), never a
# speed check; BUSY covers the 5 s handoff timeout, node 2's start and a loaded machine.
WAIT = 15_000
BUSY = 40_000
# nginx's own top-level file: paths for a process that is not the system's, and the access log the
# test reads. Everything the site does comes from deploy/nginx/pivra.conf, included unchanged.
MAIN_CONF = """\
daemon off;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format nodes '$remote_addr "$request_method $request_uri" $status upstream=$upstream_addr';
    access_log {dir}/access.log nodes;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    include {config};
}}
"""
# Other visitors: each starts a widget session and holds a socket after its hello, as a widget does.
CONNECT_OTHER_VISITORS = """async ([publicKey, count]) => {
  window.__others = [];
  for (let i = 0; i < count; i++) {
    const session = await fetch("/api/widget/session", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({public_key: publicKey}),
    }).then((r) => r.json());
    const ws = new WebSocket(`ws://${location.host}/ws/widget/?other=${i}`);
    await new Promise((welcomed, failed) => {
      ws.onopen = () => ws.send(JSON.stringify({type: "hello", token: session.token}));
      ws.onmessage = welcomed;
      ws.onerror = failed;
    });
    window.__others.push(ws);
  }
  return window.__others.length;
}"""


@dataclass
class Proxy:
    url: str
    access_log: Path
    service: Service

    def lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def upstreams(self, uri: str, *, status: str = "") -> list[str]:
        """The node that answered every logged request for ``uri`` (the path and query as sent), of
        those answered with ``status`` if given. ``$upstream_addr`` lists every node tried, ``, ``
        apart (a node that refused first, then the one that answered): the last one answered."""
        found = []
        for line in self.lines():
            match = re.search(r'"\S+ (\S+)" (\d+) upstream=(.+)$', line)
            if match and match[1] == uri and match[2] == (status or match[2]):
                found.append(match[3].split(", ")[-1].strip())
        return found


def _write_nginx_files(directory: Path, *, nodes: list[int], listen: int, static_root: Path) -> Path:
    """The test's main file and the files pivra.conf includes (relative to the main file's
    directory, as /etc/nginx/pivra/… are to /etc/nginx/nginx.conf)."""
    (directory / "tmp").mkdir(parents=True)
    (directory / "pivra").mkdir()
    # fail_timeout: how long a node that refused is skipped; short, so node 2 is tried soon after it starts.
    upstreams = "".join(f"server 127.0.0.1:{port} max_fails=1 fail_timeout=1s;\n" for port in nodes)
    (directory / "pivra" / "upstreams.conf").write_text(upstreams)
    (directory / "pivra" / "site.conf").write_text(f"listen 127.0.0.1:{listen};\n")
    (directory / "pivra" / "static.conf").write_text(f"alias {static_root}/static/;\n")
    main = directory / "nginx.conf"
    main.write_text(MAIN_CONF.format(dir=directory, config=CONFIG))
    return main


def _start_nginx(directory: Path, *, nodes: list[int], listen: int, static_root: Path) -> Proxy:
    ensure_system_programs(["nginx"])
    main = _write_nginx_files(directory, nodes=nodes, listen=listen, static_root=static_root)
    errors = str(directory / "error.log")
    checked = subprocess.run(["nginx", "-t", "-c", str(main), "-e", errors], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    service = spawn("nginx", ["nginx", "-c", str(main), "-e", errors])
    proxy = Proxy(url=f"http://127.0.0.1:{listen}", access_log=directory / "access.log", service=service)
    wait_for_port("127.0.0.1", listen, timeout=30, process=service.process)
    return proxy


@pytest.fixture
def nodes_env(transactional_db: None) -> dict[str, str]:
    """The environment both nodes share: the test database, the session's Redis, behind the proxy."""
    if connection.vendor != "postgresql":
        pytest.skip("two app nodes need a shared PostgreSQL")
    db = connection.settings_dict
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PIVRA_REDIS_URL": settings.REDIS_URL,
        "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PIVRA_BEHIND_PROXY": "1",
        "PIVRA_DB_POOL_MAX": "8",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _route_to_node_two(proxy: Proxy, node_two: str) -> None:
    """Send probes through nginx until one reaches node 2: nginx tries a node that refused again
    once its fail_timeout has passed, and least_conn then prefers it (node 1 holds every socket)."""
    deadline = time.monotonic() + 60
    while node_two not in proxy.upstreams("/healthz?probe"):
        assert time.monotonic() < deadline, f"nginx never routed to node 2: {proxy.lines()[-5:]}"
        httpx.get(f"{proxy.url}/healthz?probe", timeout=10)
        time.sleep(0.2)


def _sockets(proxy: Proxy, uri: str, count: int) -> list[str]:
    """The nodes of ``uri``'s WebSockets (answered 101), once ``count`` are logged: nginx logs a
    socket when it closes."""
    deadline = time.monotonic() + 30
    while len(proxy.upstreams(uri)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proxy.upstreams(uri) == proxy.upstreams(uri, status="101"), proxy.lines()
    return proxy.upstreams(uri)


def _session_buckets(ip: str) -> int:
    """Widget sessions the app counted for ``ip`` this minute or the last (pivra/widget/ratelimit.py)."""
    window = int(time.time() // 60)
    return sum(int(cache.get(f"rl:session:{ip}:{w}") or 0) for w in (window - 1, window))


def _forwarded_for_is_the_hop_nginx_wrote(proxy: Proxy, bot: Chatbot) -> str:
    """A client on 127.0.0.5 writes its own X-Forwarded-For; nginx appends 127.0.0.5 and connects to
    the node from 127.0.0.1. With PIVRA_BEHIND_PROXY the app counts the session for 127.0.0.5: not
    the forged address, not the proxy's. Returns the new visitor's token."""
    forged = "203.0.113.77"
    before = {ip: _session_buckets(ip) for ip in ("127.0.0.5", forged)}
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.5"), base_url=proxy.url) as client:
        answer = client.post(
            "/api/widget/session", json={"public_key": bot.public_key}, headers={"X-Forwarded-For": forged}
        )
    assert answer.status_code == 200, answer.text
    assert _session_buckets("127.0.0.5") == before["127.0.0.5"] + 1
    assert _session_buckets(forged) == before[forged] == 0
    return str(answer.json()["token"])


def _sse_frames_pass_unbuffered(proxy: Proxy, token: str) -> None:
    """The widget's SSE fallback through nginx: the welcome frame arrives while the stream stays open."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    with httpx.stream("GET", f"{proxy.url}/api/widget/stream", headers=headers, timeout=20) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line == "event: welcome":
                return
    raise AssertionError("the stream ended without a welcome frame")


def _new_context(browser: Browser, base_url: str) -> BrowserContext:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    return context


def test_the_whole_handoff_through_nginx_with_the_visitor_on_node_one_and_the_agent_on_node_two(
    browser: Browser, nodes_env: dict[str, str]
) -> None:
    bot = seed_demo()
    chatbot_update_handoff_settings(
        chatbot=bot,
        enabled=True,
        keywords=bot.handoff_keywords,
        waiting_message=bot.handoff_waiting_message,
        timeout_seconds=5,
        busy_message="Our team is busy right now. We'll be with you as soon as we can.",
    )
    alice = User.objects.get(username="alice")
    work = Path(tempfile.mkdtemp(prefix="pivra-two-nodes-"))
    listen, *node_ports = free_port(), free_port(), free_port()
    node_one, node_two = (f"127.0.0.1:{port}" for port in node_ports)
    env = {**nodes_env, "PIVRA_PUBLIC_URL": f"http://127.0.0.1:{listen}"}
    # The proxy serves /static/ from disk: what collectstatic writes below its root (site.conf).
    static_root = work / "data"
    collected = subprocess.run(
        [PYTHON, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        env={**env, "PIVRA_DATA_DIR": str(static_root)},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert collected.returncode == 0, collected.stderr
    for name in ("node1", "node2"):
        (LOGS / name).mkdir(parents=True, exist_ok=True)
    apps: list[AppProcesses] = []
    proxy: Proxy | None = None
    contexts: list[BrowserContext] = []
    try:
        # Node 1: web, the three workers and beat. Node 2 is not up yet: nginx skips it.
        apps.append(
            start_app(
                env=env,
                port=node_ports[0],
                log_dir=LOGS / "node1",
                web_processes=1,
                worker_concurrency=4,
                delivery_concurrency=4,
                ai_concurrency=2,
            )
        )
        proxy = _start_nginx(work / "nginx", nodes=node_ports, listen=listen, static_root=static_root)
        loader = httpx.get(f"{proxy.url}/static/widget/loader.js")
        assert loader.status_code == 200 and "max-age=300" in loader.headers["Cache-Control"]  # nginx's, from disk

        # The visitor opens the widget and asks for a person, and other visitors are chatting.
        visitor_context, others_context, agent_context = (_new_context(browser, proxy.url) for _ in range(3))
        contexts += [visitor_context, others_context, agent_context]
        shop = visitor_context.new_page()
        frame = open_widget(shop)
        widget = frame.locator("body")
        send(frame, "Hi, is anyone there?")
        expect(frame.get_by_role("log", name="Conversation").locator(".pv-row.pv-ai[data-seq]")).to_have_count(
            1, timeout=WAIT
        )
        frame.get_by_role("button", name="Talk to a human").click()
        expect(widget).to_have_attribute("data-state", "pending", timeout=WAIT)
        others = others_context.new_page()
        others.goto("/healthz")
        assert others.evaluate(CONNECT_OTHER_VISITORS, [bot.public_key, OTHER_VISITORS]) == OTHER_VISITORS

        # Node 2 joins: web only.
        apps.append(start_app(env=env, port=node_ports[1], log_dir=LOGS / "node2", web_processes=1, roles=("web",)))
        _route_to_node_two(proxy, node_two)
        assert [service.name for service in apps[1].services] == ["daphne-1"]  # no worker, no beat

        # Nobody claims within 5 s: node 1's worker (node 2 runs none) turns the wait into Team busy.
        expect(widget).to_have_attribute("data-state", "busy", timeout=BUSY)
        expect(frame.get_by_text("We'll be with you as soon as we can.")).to_be_visible()
        conversation = str(Conversation.objects.get(handoff__isnull=False).public_id)
        assert Handoff.objects.get().timed_out_at is not None
        screenshot(shop, "two-nodes-widget-team-busy")

        # The agent signs in through the proxy and claims late.
        agent = agent_context.new_page()
        agent.goto("/accounts/login/?next=/dashboard/conversations/")
        agent.get_by_label("Username").fill(alice.username)
        agent.get_by_label("Password").fill(DEMO_PASSWORD)
        agent.get_by_role("button", name="Log in").click()
        expect(agent.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
        agent.goto(f"/dashboard/conversations/{conversation}/")
        expect(agent.locator("[data-badge]")).to_have_text("Team busy", timeout=WAIT)
        agent.get_by_role("button", name="Claim").click()
        expect(agent.locator("[data-badge]")).to_have_text("Claimed by Alice", timeout=WAIT)
        expect(widget).to_have_attribute("data-state", "active", timeout=WAIT)
        expect(frame.get_by_text("● Live Agent")).to_be_visible()

        # They talk, both ways, each through their own node.
        box = agent.get_by_placeholder("Reply to visitor")
        box.fill("Sorry for the wait, Alice here. How can I help?")
        box.press("Enter")
        conversation_log = frame.get_by_role("log", name="Conversation")
        expect(conversation_log.locator(".pv-row.pv-agent[data-seq]")).to_contain_text("Alice here", timeout=WAIT)
        send(frame, "My parcel never arrived.")
        expect(agent.locator(".ev-visitor .ev-bubble").last).to_have_text("My parcel never arrived.", timeout=WAIT)
        box.fill("I'll send a new one today.")
        box.press("Enter")
        expect(conversation_log.locator(".pv-row.pv-agent[data-seq]").last).to_contain_text(
            "send a new one", timeout=WAIT
        )
        screenshot(shop, "two-nodes-widget-live-agent")
        screenshot(agent, "two-nodes-console")

        token = _forwarded_for_is_the_hop_nginx_wrote(proxy, bot)
        _sse_frames_pass_unbuffered(proxy, token)
        for context in contexts:
            context.close()
        contexts.clear()

        # Where each socket was: the visitor's (and the other visitors') on node 1, the agent's on node 2.
        assert _sockets(proxy, "/ws/widget/", 1) == [node_one]
        for index in range(OTHER_VISITORS):
            assert _sockets(proxy, f"/ws/widget/?other={index}", 1) == [node_one]
        console = _sockets(proxy, "/ws/console/", 2)  # the list page's socket and the conversation's
        assert console and set(console) == {node_two}, proxy.lines()
    finally:
        for context in contexts:
            context.close()
        if proxy is not None:
            proxy.service.stop()
            for name in ("access.log", "error.log"):
                if (proxy.access_log.parent / name).exists():
                    (LOGS / f"nginx-{name}").write_text((proxy.access_log.parent / name).read_text())
        for app in reversed(apps):
            app.stop()
        shutil.rmtree(work, ignore_errors=True)
