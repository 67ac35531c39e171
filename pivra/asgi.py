"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import gc
from importlib import import_module

from django.conf import settings
from django.core.asgi import get_asgi_application

from pivra.bootstrap import configure_or_exit

configure_or_exit()
# Build the Django app before importing consumers: they import models.
django_asgi_app = get_asgi_application()

from pivra.asgi_layers import PathRouter, TypeRouter  # noqa: E402
from pivra.middleware import RefuseUnstorableSocket  # noqa: E402
from pivra.proxy import ProxyHeadersMiddleware  # noqa: E402
from pivra.routing import websocket_routes  # noqa: E402
from pivra.socket_origin import PublicOriginValidator  # noqa: E402

# Every socket is opened from a page on our own origin (the widget runs in our iframe), so the
# Origin header must be exactly ours and the Host one we serve; chatbots' customer sites are
# enforced by frame-ancestors. The client address and scheme come from the trusted proxy hop
# first, so the checks, the rate limits and Django's REMOTE_ADDR all see the same client. Each layer
# hands the connection on without a coroutine of its own (pivra/asgi_layers.py): idle sockets stay small.
application = ProxyHeadersMiddleware(
    TypeRouter(
        {
            "http": django_asgi_app,
            # A handshake carrying NUL or undecodable bytes is refused before anything reads it.
            "websocket": RefuseUnstorableSocket(PublicOriginValidator(PathRouter(websocket_routes))),
        }
    )
)

# Everything imported so far lives as long as the process. Freezing it keeps the garbage collector's
# full collections from walking those objects again and again: the bench measured 70 to 100 ms pauses
# of daphne (every request waits) before, and p99 reply latency followed them.
import_module(settings.ROOT_URLCONF)  # views and API schemas are built on first import
gc.collect()
gc.freeze()
