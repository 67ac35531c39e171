"""``{% attachment_view event %}``: a message's image (thumbnail linking to the full size) or PDF
(download link with name and size) in the console's server-rendered thread, with fresh signed links.
``{% attachment_limits as limits %}``: the configured limits the console's script reads from the page."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from pivra.attachment_links import human_size, with_links

register = template.Library()


@register.simple_tag
def attachment_view(event: Any) -> SafeString | str:
    attachment = event.data.get("attachment") if isinstance(event.data, dict) else None
    if not isinstance(attachment, dict):
        return event.text
    linked = with_links(attachment)
    width, height = int(linked.get("width") or 320), int(linked.get("height") or 240)
    scale = min(1.0, 240 / max(width, 1), 240 / max(height, 1))
    return render_to_string(
        "attachments/view.html",
        {
            "a": linked,
            "size": human_size(int(linked.get("size") or 0)),
            "thumb_width": max(1, round(width * scale)),
            "thumb_height": max(1, round(height * scale)),
        },
    )


@register.simple_tag
def attachment_limits() -> dict[str, int]:
    return {
        "max_bytes": settings.ATTACHMENT_MAX_BYTES,
        "max_mb": settings.ATTACHMENT_MAX_BYTES // (1024 * 1024),
        "link_seconds": settings.ATTACHMENT_LINK_SECONDS,
    }
