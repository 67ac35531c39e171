"""A conversation page's thread with its internal notes merged in, each after the event it followed."""

from __future__ import annotations

from typing import Any

from conversations.models import Note


def thread_with_notes(items: list[dict[str, Any]], notes: list[Note]) -> list[dict[str, Any]]:
    """``items`` (each with an ``event``, in seq order) with a ``{"style": "note", "note": …}`` item for
    every note, placed after the last event whose seq is at most the note's ``after_seq``."""
    merged: list[dict[str, Any]] = []
    pending = sorted(notes, key=lambda note: (note.after_seq, note.created_at, note.pk))
    position = 0
    for item in items:
        while position < len(pending) and pending[position].after_seq < item["event"].seq:
            merged.append({"style": "note", "note": pending[position]})
            position += 1
        merged.append(item)
    merged.extend({"style": "note", "note": note} for note in pending[position:])
    return merged
