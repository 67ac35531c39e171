from __future__ import annotations

import uuid


def parse_uuid(value: object) -> uuid.UUID | None:
    """A public id from a URL or a frame, or None when it is not a UUID (then: not found)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
