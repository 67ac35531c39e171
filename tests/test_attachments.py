"""Attachments: checked by content, images re-encoded without EXIF, sizes bounded, served only to the
conversation's visitor and its workspace's agents through signed, expiring links."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.test import Client
from PIL import Image

from attachments.models import Attachment
from conversations.models import Conversation, Event, Visitor
from handoff.transitions.claim import handoff_claim
from pivra.widget.tokens import visitor_token
from tests.attachment_helpers import (
    GPS_IFD,
    HTML_BYTES,
    PDF_BYTES,
    bomb_png,
    download_body,
    filesystem_storages,
    jpeg_with_gps,
    png_bytes,
    upload,
)
from tests.factories import Personas, make_chatbot
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(tmp_path: Path, settings: Any) -> Path:
    root = tmp_path / "media"
    settings.STORAGES = filesystem_storages(root)
    return root


def _visitor(personas: Personas) -> tuple[Visitor, Conversation, Client]:
    visitor, conversation = new_visitor(personas.chatbot)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}")
    return visitor, conversation, client


def _send(client: Client, name: str, data: bytes, *, client_id: str | None = None, claimed: str = "image/png") -> Any:
    return client.post(
        "/api/widget/attachments",
        {"client_id": client_id or uuid.uuid4().hex, "file": upload(name, data, claimed)},
    )


def test_a_visitor_sends_an_image_stored_under_a_random_name_with_a_thumbnail(personas, media) -> None:
    _, conversation, client = _visitor(personas)
    response = _send(client, "../../etc/My Screenshot.png", png_bytes((1000, 500)))
    assert response.status_code == 200, response.content
    body = response.json()
    event = Event.objects.get(conversation=conversation, seq=body["seq"])
    assert (event.kind, event.author, event.text) == ("message", "visitor", "My Screenshot.png")
    described = event.data["attachment"]
    assert set(described) == {"id", "name", "content_type", "size", "width", "height"}  # no URL stored
    assert (described["content_type"], described["width"], described["height"]) == ("image/png", 1000, 500)
    attachment = Attachment.objects.get(public_id=described["id"])
    assert "Screenshot" not in attachment.file.name and ".." not in attachment.file.name
    assert (media / attachment.file.name).is_file()
    thumb = Image.open(media / attachment.thumbnail.name)
    assert max(thumb.size) == 320
    frame = body["event"]["data"]["attachment"]
    assert frame["url"].startswith(f"/api/attachments/{described['id']}/file?sig=")
    assert frame["thumb_url"].startswith(f"/api/attachments/{described['id']}/thumb?sig=")

    full = client.get(frame["url"])
    assert full.status_code == 200
    assert full["Content-Type"] == "image/png"
    assert full["X-Content-Type-Options"] == "nosniff"
    assert full["Content-Security-Policy"].startswith("sandbox")
    assert Image.open(io.BytesIO(download_body(full))).size == (1000, 500)
    small = client.get(frame["thumb_url"])
    assert small.status_code == 200 and small["Content-Type"] in ("image/png", "image/jpeg")


def test_a_png_that_is_really_html_is_refused_and_nothing_is_stored(personas, media) -> None:
    _, conversation, client = _visitor(personas)
    response = _send(client, "cute-cat.png", HTML_BYTES, claimed="image/png")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_type"
    assert not Attachment.objects.exists()
    assert not conversation.events.exists()
    assert not any(p.is_file() for p in media.rglob("*")) if media.exists() else True


def test_an_image_header_with_garbage_behind_it_is_refused(personas) -> None:
    _, _, client = _visitor(personas)
    response = _send(client, "broken.png", png_bytes()[:40] + b"\x00" * 200)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_type"


def test_a_pdf_is_accepted_and_always_downloaded_never_rendered(personas) -> None:
    _, _, client = _visitor(personas)
    response = _send(client, 'invoice "March".html', PDF_BYTES, claimed="text/html")
    assert response.status_code == 200, response.content
    frame = response.json()["event"]["data"]["attachment"]
    assert frame["content_type"] == "application/pdf"
    assert frame["name"] == "invoice _March_.html.pdf"  # the type found in the content names the extension
    assert frame["thumb_url"] is None
    download = client.get(frame["url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/pdf"
    assert download["Content-Disposition"].startswith("attachment;")
    assert 'filename="invoice _March_.html.pdf"' in download["Content-Disposition"]
    assert download["Content-Security-Policy"].startswith("sandbox")
    assert download_body(download) == PDF_BYTES


def test_an_image_comes_back_without_exif_or_gps_turned_the_right_way_up(personas) -> None:
    original = jpeg_with_gps((400, 200), orientation=6)
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)  # the test file has GPS
    _, _, client = _visitor(personas)
    response = _send(client, "holiday.jpg", original, claimed="image/jpeg")
    assert response.status_code == 200, response.content
    frame = response.json()["event"]["data"]["attachment"]
    assert (frame["width"], frame["height"]) == (200, 400)  # orientation 6 applied to the pixels
    stored = download_body(client.get(frame["url"]))
    image = Image.open(io.BytesIO(stored))
    assert image.format == "JPEG"
    assert image.size == (200, 400)
    assert len(image.getexif()) == 0
    assert "exif" not in image.info
    assert b"Spy Camera" not in stored


def test_a_file_over_the_size_limit_is_refused_with_413(personas, settings) -> None:
    settings.ATTACHMENT_MAX_BYTES = 1024 * 1024
    _, _, client = _visitor(personas)
    response = _send(client, "big.pdf", PDF_BYTES + b"0" * 1_100_000, claimed="application/pdf")
    assert response.status_code == 413
    assert response.json() == {"code": "file_too_large", "detail": "Files can be at most 1 MB."}
    assert not Attachment.objects.exists()


@pytest.mark.parametrize(
    "size",
    [(10_000, 10_000), (8_000, 6_000)],  # past Pillow's own warning bound; past only ours (40 Mpx)
)
def test_a_decompression_bomb_is_refused_before_it_is_decoded(personas, size) -> None:
    bomb = bomb_png(size)
    assert len(bomb) < 200_000
    _, _, client = _visitor(personas)
    response = _send(client, "tiny.png", bomb)
    assert response.status_code == 413
    assert response.json()["code"] == "image_too_large"
    assert not Attachment.objects.exists()


def test_a_link_expires_and_a_tampered_one_is_refused(personas, settings) -> None:
    _, _, client = _visitor(personas)
    with time_machine.travel("2026-12-01 10:00:00", tick=False):
        frame = _send(client, "a.png", png_bytes()).json()["event"]["data"]["attachment"]
        assert client.get(frame["url"]).status_code == 200
        other = _send(client, "b.png", png_bytes(color=(1, 2, 3))).json()["event"]["data"]["attachment"]
    url, sig = frame["url"].split("?sig=")
    with time_machine.travel("2026-12-01 10:59:00", tick=False):
        assert client.get(frame["url"]).status_code == 200
        tampered = client.get(f"{url}?sig={sig[:-2]}{'AA' if not sig.endswith('AA') else 'BB'}")
        assert (tampered.status_code, tampered.json()["code"]) == (403, "invalid_link")
        # A valid signature of the thumbnail, or of another file, opens nothing else.
        assert client.get(f"{url}?sig={frame['thumb_url'].split('?sig=')[1]}").status_code == 403
        assert client.get(f"{url}?sig={other['url'].split('?sig=')[1]}").status_code == 403
        assert client.get(url).status_code == 403
    with time_machine.travel("2026-12-01 11:00:30", tick=False):
        expired = client.get(frame["url"])
        assert (expired.status_code, expired.json()["code"]) == (403, "link_expired")


def test_a_valid_link_is_refused_to_another_visitor_and_another_workspaces_agent(personas) -> None:
    """Acceptance: an attachment URL of one conversation is refused to another visitor and to
    another workspace's agent — with a valid, unexpired signature."""
    _, _, client = _visitor(personas)
    frame = _send(client, "private.png", png_bytes()).json()["event"]["data"]["attachment"]
    urls = [frame["url"], frame["thumb_url"]]

    stranger, _ = new_visitor(personas.chatbot)  # same chatbot, another visitor
    other_bot_visitor, _ = new_visitor(personas.other_chatbot)
    for someone in (stranger, other_bot_visitor):
        outsider_client = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(someone)}")
        for url in urls:
            answer = outsider_client.get(url)
            assert (answer.status_code, answer.json()["code"]) == (404, "attachment_not_found")

    foreign_agent = Client()
    foreign_agent.force_login(personas.outsider)
    for url in urls:
        assert foreign_agent.get(url).status_code == 404
    nobody = Client()
    for url in urls:
        assert nobody.get(url).status_code == 404
    forged = Client(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert forged.get(urls[0]).status_code == 404

    teammate = Client()
    teammate.force_login(personas.teammate)
    for url in urls:
        assert teammate.get(url).status_code == 200
    assert client.get(urls[0]).status_code == 200


def test_uploads_share_the_visitors_message_budget_and_a_resend_is_free(personas, settings) -> None:
    settings.RATE_VISITOR_PER_MINUTE = 2
    _, conversation, client = _visitor(personas)
    first_id = uuid.uuid4().hex
    assert _send(client, "1.png", png_bytes(), client_id=first_id).status_code == 200
    assert _send(client, "2.png", png_bytes()).status_code == 200
    again = _send(client, "1.png", png_bytes(), client_id=first_id)  # a resend: same event, no budget
    assert again.status_code == 200 and again.json()["duplicate"] is True
    refused = _send(client, "3.png", png_bytes())
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused["Retry-After"]) >= 1
    assert Attachment.objects.filter(conversation=conversation).count() == 2


def test_a_conversation_holds_a_bounded_number_of_files(personas, settings) -> None:
    settings.ATTACHMENTS_PER_CONVERSATION = 2
    _, _, client = _visitor(personas)
    assert _send(client, "1.png", png_bytes()).status_code == 200
    assert _send(client, "2.pdf", PDF_BYTES).status_code == 200
    refused = _send(client, "3.png", png_bytes())
    assert (refused.status_code, refused.json()["code"]) == (413, "too_many_attachments")


def test_a_conversation_holds_a_bounded_number_of_bytes(personas, settings) -> None:
    settings.ATTACHMENT_CONVERSATION_MAX_BYTES = len(PDF_BYTES) * 2 + 10
    _, _, client = _visitor(personas)
    assert _send(client, "1.pdf", PDF_BYTES).status_code == 200
    assert _send(client, "2.pdf", PDF_BYTES).status_code == 200
    refused = _send(client, "3.pdf", PDF_BYTES)
    assert (refused.status_code, refused.json()["code"]) == (413, "attachments_quota")


def test_a_visitor_file_in_an_ai_conversation_gets_no_ai_reply(personas, django_capture_on_commit_callbacks) -> None:
    _, conversation, client = _visitor(personas)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _send(client, "a.png", png_bytes())
    assert response.status_code == 200
    event = Event.objects.get(conversation=conversation, seq=response.json()["seq"])
    assert "to_ai" not in event.data  # never handed to the AI, so never swept for a reply either
    assert not any("ai_reply" in getattr(c, "__qualname__", "") for c in callbacks)


def test_the_ai_reads_an_attachment_as_a_line_in_its_history(personas) -> None:
    from conversations.ai import _history

    visitor, conversation, client = _visitor(personas)
    say(visitor, conversation, "hello")
    _send(client, "receipt.pdf", PDF_BYTES)
    turns = _history(conversation, before_seq=99)
    assert [t.text for t in turns][-1] == "[attached a PDF file: receipt.pdf]"


def test_the_assignee_sends_a_pdf_that_the_visitor_can_download(personas) -> None:
    bot = enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "I need the form")
    request(visitor, conversation)
    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    agent = Client(enforce_csrf_checks=True)
    agent.force_login(personas.teammate)
    agent.get("/dashboard/")  # sets the csrftoken cookie
    token = agent.cookies["csrftoken"].value
    url = f"/api/console/conversations/{conversation.public_id}/attachments"
    no_csrf = agent.post(url, {"client_id": "c1", "file": upload("form.pdf", PDF_BYTES, "application/pdf")})
    assert (no_csrf.status_code, no_csrf.json()["code"]) == (403, "csrf_failed")
    response = agent.post(
        url, {"client_id": "c1", "file": upload("form.pdf", PDF_BYTES, "application/pdf")}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 201, response.content
    event = Event.objects.get(conversation=conversation, seq=response.json()["seq"])
    assert (event.author, event.agent_id, event.text) == ("agent", personas.teammate.pk, "form.pdf")
    visitor_frame = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}").get(
        f"/api/widget/events?conversation={conversation.public_id}&after_seq={event.seq - 1}"
    )
    link = visitor_frame.json()["events"][0]["data"]["attachment"]["url"]
    download = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}").get(link)
    assert download.status_code == 200 and download_body(download) == PDF_BYTES

    owner = Client(enforce_csrf_checks=True)  # a colleague who did not claim it
    owner.force_login(personas.owner)
    owner.get("/dashboard/")
    refused = owner.post(
        url,
        {"client_id": "c2", "file": upload("x.pdf", PDF_BYTES, "application/pdf")},
        HTTP_X_CSRFTOKEN=owner.cookies["csrftoken"].value,
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "not_assignee")
    outsider = Client()
    outsider.force_login(personas.outsider)
    assert outsider.post(url, {"client_id": "c3", "file": upload("x.pdf", PDF_BYTES)}).status_code == 404


def test_files_are_deleted_from_storage_with_their_conversation(personas, media, django_capture_on_commit_callbacks):
    _, conversation, client = _visitor(personas)
    _send(client, "a.png", png_bytes())
    _send(client, "b.pdf", PDF_BYTES)
    stored = [p for p in media.rglob("*") if p.is_file()]
    assert len(stored) == 3  # two files and one thumbnail
    with django_capture_on_commit_callbacks(execute=True):
        Conversation.objects.filter(pk=conversation.pk).delete()
    assert not Attachment.objects.exists()
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_a_workspaces_deletion_deletes_its_files(personas, media, django_capture_on_commit_callbacks) -> None:
    bot = make_chatbot(personas.other_workspace, "Second")
    visitor, _ = new_visitor(bot)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}")
    assert _send(client, "a.png", png_bytes()).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        personas.other_workspace.delete()
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_uploads_without_a_token_or_a_file_are_refused_readably(personas) -> None:
    assert Client().post("/api/widget/attachments", {"client_id": "x"}).json()["code"] == "not_authenticated"
    _, _, client = _visitor(personas)
    missing = client.post("/api/widget/attachments", {"client_id": "x"})
    assert (missing.status_code, missing.json()["code"]) == (400, "no_file")
    bad_id = client.post("/api/widget/attachments", {"client_id": "has space", "file": upload("a.png", png_bytes())})
    assert bad_id.status_code in (400, 422) and bad_id.json()["code"] == "invalid_client_id"
    assert client.get("/api/widget/attachments").status_code == 405


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_gif_and_webp_are_accepted_and_re_encoded_in_their_own_format(personas, fmt: str) -> None:
    frames = [Image.new("RGB", (60, 40), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out.write(b"<script>appended after the image</script>")
    _, _, client = _visitor(personas)
    response = _send(client, f"anim.{fmt.lower()}", out.getvalue(), claimed="application/octet-stream")
    assert response.status_code == 200, response.content
    frame = response.json()["event"]["data"]["attachment"]
    assert frame["content_type"] == f"image/{fmt.lower()}"
    stored = download_body(client.get(frame["url"]))
    assert Image.open(io.BytesIO(stored)).format == fmt
    assert b"<script>" not in stored


def test_a_resolved_conversation_takes_no_file(personas) -> None:
    from conversations.models import Conversation as Conv

    _, conversation, client = _visitor(personas)
    Conv.objects.filter(pk=conversation.pk).update(status=Conv.Status.CLOSED)
    refused = _send(client, "late.png", png_bytes())
    assert (refused.status_code, refused.json()["code"]) == (409, "conversation_closed")
    assert not Attachment.objects.filter(conversation=conversation).exists()
    assert not conversation.events.exists()


def test_a_file_gone_from_storage_is_a_404_not_a_500(personas, media) -> None:
    _, _, client = _visitor(personas)
    frame = _send(client, "a.pdf", PDF_BYTES).json()["event"]["data"]["attachment"]
    for path in media.rglob("*"):
        if path.is_file():
            path.unlink()
    gone = client.get(frame["url"])
    assert (gone.status_code, gone.json()["code"]) == (404, "attachment_not_found")
