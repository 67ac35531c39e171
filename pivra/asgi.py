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

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from pivra.routing import websocket_urlpatterns  # noqa: E402

# Every socket is opened from a page on our own origin (the widget runs in our iframe), so the
# Origin header must name one of our hosts; chatbots' customer sites are enforced by frame-ancestors.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)

# Everything imported so far lives as long as the process. Freezing it keeps the garbage collector's
# full collections from walking those objects again and again: the bench measured 70 to 100 ms pauses
# of daphne (every request waits) before, and p99 reply latency followed them.
import_module(settings.ROOT_URLCONF)  # views and API schemas are built on first import
gc.collect()
gc.freeze()
