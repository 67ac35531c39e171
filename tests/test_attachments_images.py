"""Hostile images: scan bombs, fuzzed files, metadata that must not survive, decodes bounded per process."""

from __future__ import annotations

import io
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from PIL import Image, ImageOps

from attachments import content
from attachments.models import Attachment
from pivra.widget.tokens import visitor_token
from tests.attachment_helpers import (
    MARKER,
    filesystem_storages,
    images_with_metadata,
    jpeg_with_gps,
    many_scan_jpeg,
    png_bytes,
    upload,
)
from tests.handoff_helpers import new_visitor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(tmp_path: Path, settings: Any) -> Path:
    root = tmp_path / "media"
    settings.STORAGES = filesystem_storages(root)
    return root


def _client(personas: Any) -> Client:
    visitor, _ = new_visitor(personas.chatbot)
    return Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}")


def _send(client: Client, name: str, data: bytes) -> Any:
    return client.post("/api/widget/attachments", {"client_id": uuid.uuid4().hex, "file": upload(name, data)})


def test_a_jpeg_with_too_many_scans_is_refused_before_it_is_decoded(personas, monkeypatch) -> None:
    client = _client(personas)
    normal = io.BytesIO()
    Image.new("RGB", (64, 64)).save(normal, format="JPEG", progressive=True)
    assert _send(client, "fine.jpg", normal.getvalue()).status_code == 200  # ~10 scans: a real photo's
    monkeypatch.setattr(content, "_image", lambda *a, **k: pytest.fail("a scan bomb was decoded"))
    refused = _send(client, "bomb.jpg", many_scan_jpeg())
    assert (refused.status_code, refused.json()["code"]) == (413, "image_too_complex")
    assert Attachment.objects.count() == 1


def test_an_upload_waits_for_a_decoding_turn_and_is_told_to_come_back(personas, monkeypatch) -> None:
    client = _client(personas)
    monkeypatch.setattr(content, "DECODE_WAIT_SECONDS", 0.05)
    assert content._decodes.acquire(timeout=1)  # another upload is decoding (PIVRA_ATTACHMENT_DECODES=1)
    try:
        busy = _send(client, "a.png", png_bytes())
    finally:
        content._decodes.release()
    assert (busy.status_code, busy.json()["code"]) == (503, "busy")
    assert int(busy["Retry-After"]) > 0
    assert Attachment.objects.count() == 0
    assert _send(client, "a.png", png_bytes()).status_code == 200  # the turn was given back


def test_any_pillow_error_is_the_unreadable_refusal_never_a_500(personas, monkeypatch) -> None:
    client = _client(personas)

    def explode(self: Image.Image, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a decoder bug")

    data = png_bytes()
    monkeypatch.setattr(Image.Image, "load", explode)
    refused = _send(client, "a.png", data)
    assert (refused.status_code, refused.json()["code"]) == (415, "unsupported_type")


def test_a_broken_exif_orientation_keeps_the_image_as_it_is(personas, monkeypatch) -> None:
    client = _client(personas)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a malformed EXIF block")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    response = _send(client, "photo.jpg", jpeg_with_gps((400, 200)))
    assert response.status_code == 200, response.content
    assert (
        response.json()["event"]["data"]["attachment"]["width"],
        response.json()["event"]["data"]["attachment"]["height"],
    ) == (400, 200)


def _mutants(data: bytes, count: int, seed: int) -> list[bytes]:
    """``count`` copies of ``data`` with a few bytes past the magic changed (a fixed seed: the same every run)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        mutant = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutant[rng.randrange(16, len(mutant))] = rng.randrange(256)
        out.append(bytes(mutant))
    return out


def _sample(fmt: str) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", (48, 40), (20, 90, 160))
    if fmt == "GIF":
        frames = [image.convert("P"), Image.new("P", (48, 40), 7)]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    else:
        image.save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_fuzzed_images_are_stored_or_refused_readably(personas, settings, fmt: str) -> None:
    settings.ATTACHMENT_UPLOADS_PER_MINUTE = 1000
    settings.RATE_VISITOR_PER_MINUTE = 1000
    client = _client(personas)
    for mutant in _mutants(_sample(fmt), 25, seed=16):
        answer = _send(client, "fuzz.img", mutant)  # the test client raises on an unhandled exception
        assert answer.status_code in (200, 413, 415), answer.content
        if answer.status_code != 200:
            assert set(answer.json()) == {"code", "detail"}


@pytest.mark.parametrize("kind", ["jpeg", "gif", "gif-animated", "png"])
def test_comments_and_icc_profiles_do_not_survive(personas, media, kind: str) -> None:
    client = _client(personas)
    response = _send(client, f"meta.{kind[:4]}", images_with_metadata()[kind])
    assert response.status_code == 200, response.content
    attachment = Attachment.objects.get()
    for name in (attachment.file.name, attachment.thumbnail.name):
        stored = (media / name).read_bytes()
        assert MARKER not in stored
        assert b"iCCP" not in stored and b"ICC_PROFILE" not in stored
        reopened = Image.open(io.BytesIO(stored))
        assert "comment" not in reopened.info and "icc_profile" not in reopened.info
