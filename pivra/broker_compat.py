"""Keep a Celery worker alive when Redis goes away while it holds unacknowledged tasks.

kombu 5.7 / celery 5.7, Redis transport: on a lost broker connection the worker's consumer first
calls ``connection.collect()`` and then ``connection.close()`` (celery
``Consumer.on_connection_error_after_connected``). ``collect()`` tries to close the default
channel, which fails half-way (Redis is down) before the channel is marked closed, and then
detaches the transport (``transport.client = None``). ``close()`` closes that channel again; with
tasks still in flight (``acks_late``) it tries to put them back in the queue, builds a new Redis
pool from ``transport.client`` and dies with ``AttributeError: 'NoneType' object has no attribute
'hostname'`` -- not a connection error, so the consumer does not retry and the worker exits.

Keeping the transport's reference to its (closed) kombu ``Connection`` turns that into what it is:
a Redis ``ConnectionError`` (ignored during the close; the unacknowledged tasks stay in Redis's
unacked index and are redelivered after the visibility timeout), and lets a task that finishes
after Redis is back acknowledge on its old channel instead of being run a second time.
"""

from __future__ import annotations

from typing import Any

from kombu.connection import Connection
from kombu.transport import redis as redis_transport

_original_do_close_transport = Connection._do_close_transport


def _do_close_transport(self: Any) -> None:
    transport = self._transport
    if isinstance(transport, redis_transport.Transport):
        # Detach the transport from this connection, but leave transport.client set: channels
        # of the old connection still need the broker's address to reconnect or give up cleanly.
        self._transport = None
        return
    _original_do_close_transport(self)


def install() -> None:
    """Idempotent; called when the Celery app is created (workers, beat and the web process)."""
    if Connection._do_close_transport is not _do_close_transport:
        Connection._do_close_transport = _do_close_transport  # type: ignore[method-assign]
