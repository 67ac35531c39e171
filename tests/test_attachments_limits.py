"""Attachments under load and abuse: upload and download budgets, quotas that hold under races, storage
outages, malformed requests, and refusals that cost no decoding — every one a JSON {code, detail}."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.http import StreamingHttpResponse
from django.test import Client

from attachments import services
from attachments.content import Checked
from attachments.models import Attachment
from handoff.transitions.claim import handoff_claim
from pivra.widget.tokens import visitor_token
from tests.attachment_helpers import PDF_BYTES, download_body, filesystem_storages, png_bytes, upload
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def media(tmp_path: Path, settings: Any) -> Path:
    root = tmp_path / "media"
    settings.STORAGES = filesystem_storages(root)
    return root


def _client(bot: Any, ip: str = "127.0.0.1") -> tuple[Any, Client]:
    visitor, conversation = new_visitor(bot)
    return conversation, Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}", REMOTE_ADDR=ip)


def _pdf(size: int) -> bytes:
    return PDF_BYTES + b"%" + b"x" * (size - len(PDF_BYTES) - 1)


def _send(client: Client, data: bytes, name: str = "doc.pdf") -> Any:
    return client.post(
        "/api/widget/attachments",
        {"client_id": uuid.uuid4().hex, "file": upload(name, data, "application/pdf")},
    )


def _code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def test_uploads_have_a_count_of_their_own_per_minute(personas, settings) -> None:
    settings.ATTACHMENT_UPLOADS_PER_MINUTE = 2
    _, client = _client(personas.chatbot, ip="198.51.100.1")
    assert [_send(client, PDF_BYTES).status_code for _ in range(2)] == [200, 200]
    third = _send(client, PDF_BYTES)
    assert _code(third) == (429, "rate_limited") and int(third["Retry-After"]) > 0


def test_uploaded_bytes_are_budgeted_per_visitor_and_per_ip(personas, settings) -> None:
    settings.ATTACHMENT_UPLOAD_MB_PER_HOUR = 1
    _, one = _client(personas.chatbot, ip="198.51.100.2")
    assert _send(one, _pdf(600 * 1024)).status_code == 200
    assert _code(_send(one, _pdf(600 * 1024))) == (429, "rate_limited")  # the visitor's hour is spent
    _, same_ip = _client(personas.chatbot, ip="198.51.100.2")
    assert _code(_send(same_ip, _pdf(600 * 1024))) == (429, "rate_limited")  # and so is the IP's
    _, elsewhere = _client(personas.chatbot, ip="198.51.100.3")
    assert _send(elsewhere, _pdf(600 * 1024)).status_code == 200


def test_a_workspace_holds_a_bounded_number_of_bytes(personas, settings) -> None:
    settings.ATTACHMENT_WORKSPACE_MAX_BYTES = 3 * len(PDF_BYTES)
    _, first = _client(personas.chatbot)
    _, second = _client(personas.chatbot)  # another conversation of the same workspace
    assert _send(first, PDF_BYTES).status_code == 200
    assert _send(second, PDF_BYTES).status_code == 200
    assert _code(_send(first, PDF_BYTES + b" ")) == (413, "workspace_attachments_quota")
    _, other_workspace = _client(personas.other_chatbot)
    assert _send(other_workspace, PDF_BYTES).status_code == 200


def test_a_checked_file_over_the_limit_is_refused(personas, settings, monkeypatch) -> None:
    settings.ATTACHMENT_MAX_BYTES = 1024
    grown = Checked(content_type="image/png", data=b"\x89PNG" + b"x" * 2000, width=1, height=1)
    monkeypatch.setattr(services, "check_upload", lambda file: grown)  # a re-encode that came out larger
    _, client = _client(personas.chatbot)
    assert _code(_send(client, png_bytes((8, 8)), "a.png")) == (413, "file_too_large")
    assert Attachment.objects.count() == 0


def test_the_quota_is_checked_again_under_the_lock_with_the_files_size(personas, settings, media, monkeypatch):
    """Another upload commits between our unlocked check and our lock: the locked check must count our bytes."""
    settings.ATTACHMENT_CONVERSATION_MAX_BYTES = 2 * len(PDF_BYTES) + 5  # room for ours, not ours and the twin
    conversation, client = _client(personas.chatbot)
    assert _send(client, PDF_BYTES).status_code == 200
    real_store = services._store

    def store_then_race(field: Any, name: str, content: Any) -> None:
        real_store(field, name, content)
        twin = Attachment.objects.get()
        twin.pk, twin.public_id, twin.event = None, uuid.uuid4(), None
        twin.size = 10
        twin.save()  # the concurrent upload's row

    monkeypatch.setattr(services, "_store", store_then_race)
    assert _code(_send(client, PDF_BYTES)) == (413, "attachments_quota")
    assert Attachment.objects.filter(conversation=conversation).count() == 2  # ours was not added
    assert len([p for p in media.rglob("*") if p.is_file()]) == 1  # and its file is gone again


def test_a_download_streams_in_chunks_within_a_byte_budget(personas, settings) -> None:
    settings.ATTACHMENT_DOWNLOAD_MB_PER_HOUR = 1
    _, client = _client(personas.chatbot, ip="198.51.100.4")
    data = _pdf(600 * 1024)
    frame = _send(client, data).json()["event"]["data"]["attachment"]
    response = client.get(frame["url"])
    assert isinstance(response, StreamingHttpResponse) and response.is_async  # daphne serves it without a warning
    assert response["Content-Length"] == str(len(data))
    assert download_body(response) == data
    again = client.get(frame["url"])
    assert _code(again) == (429, "rate_limited") and int(again["Retry-After"]) > 0


def test_a_storage_outage_is_a_503_for_upload_and_download(personas, monkeypatch, caplog) -> None:
    _, client = _client(personas.chatbot)
    frame = _send(client, PDF_BYTES).json()["event"]["data"]["attachment"]

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("could not connect to the endpoint")

    monkeypatch.setattr(FileSystemStorage, "save", down)
    monkeypatch.setattr(FileSystemStorage, "open", down)
    stored = _send(client, PDF_BYTES)
    assert _code(stored) == (503, "storage_unavailable") and int(stored["Retry-After"]) > 0
    read = client.get(frame["url"])
    assert _code(read) == (503, "storage_unavailable") and int(read["Retry-After"]) > 0
    assert Attachment.objects.count() == 1
    assert "storage unavailable" in caplog.text


def test_s3_without_its_extra_installed_fails_at_startup_with_how_to_fix(monkeypatch) -> None:
    monkeypatch.setenv("PIVRA_STORAGE", "s3")
    monkeypatch.setenv("PIVRA_S3_BUCKET", "bucket")
    probe = "import sys; sys.modules['boto3'] = None; import pivra.settings"
    refused = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert refused.returncode != 0 and "pip install 'django-storages[s3]'" in refused.stderr


def test_wrong_methods_and_malformed_bodies_are_json_refusals(personas, settings) -> None:
    _, client = _client(personas.chatbot)
    assert _code(client.get("/api/widget/attachments")) == (405, "method_not_allowed")
    frame = _send(client, PDF_BYTES).json()["event"]["data"]["attachment"]
    assert _code(client.post(frame["url"])) == (405, "method_not_allowed")
    no_boundary = client.generic("POST", "/api/widget/attachments", b"--x\r\n", content_type="multipart/form-data")
    # The input middleware reads the form first (it checks every field): its JSON refusal.
    assert _code(no_boundary) == (400, "invalid_input")
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1
    two = client.post(
        "/api/widget/attachments",
        {"client_id": "c", "file": upload("a.pdf", PDF_BYTES), "other": upload("b.pdf", PDF_BYTES)},
    )
    assert _code(two) == (400, "invalid_input")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    big = client.post("/api/widget/attachments", {"client_id": "c" * 500, "file": upload("a.pdf", PDF_BYTES)})
    assert _code(big) == (413, "request_too_large")


def _agent(user: Any) -> tuple[Client, str]:
    agent = Client(enforce_csrf_checks=True)
    agent.force_login(user)
    agent.get("/dashboard/")
    return agent, agent.cookies["csrftoken"].value


def test_a_console_upload_with_a_malformed_body_is_a_json_refusal(personas) -> None:
    _, conversation = new_visitor(personas.chatbot)
    agent, token = _agent(personas.teammate)
    url = f"/api/console/conversations/{conversation.public_id}/attachments"
    bad = agent.generic("POST", url, b"--x\r\n", content_type="multipart/form-data", HTTP_X_CSRFTOKEN=token)
    assert _code(bad) == (400, "invalid_input")
    assert _code(agent.get(url)) == (405, "method_not_allowed")


def test_an_agent_who_may_not_send_is_refused_before_the_file_is_decoded(personas, monkeypatch) -> None:
    bot = enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "help")
    request(visitor, conversation)
    url = f"/api/console/conversations/{conversation.public_id}/attachments"
    monkeypatch.setattr(services, "check_upload", lambda file: pytest.fail("decoded for an agent who may not send"))
    agent, token = _agent(personas.teammate)
    unclaimed = agent.post(url, {"client_id": "c1", "file": upload("a.png", png_bytes())}, HTTP_X_CSRFTOKEN=token)
    assert _code(unclaimed) == (409, "not_claimed")
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    other = agent.post(url, {"client_id": "c2", "file": upload("a.png", png_bytes())}, HTTP_X_CSRFTOKEN=token)
    assert _code(other) == (403, "not_assignee")


def test_a_thumbnail_downloads_under_its_own_type_and_a_bad_one_is_closed_and_404(personas, media, monkeypatch):
    _, client = _client(personas.chatbot)
    frame = _send(client, png_bytes((640, 480)), "Holiday photo.png").json()["event"]["data"]["attachment"]
    thumb = client.get(frame["thumb_url"])
    assert thumb["Content-Type"] == "image/jpeg"  # an opaque PNG's thumbnail is a JPEG
    assert 'filename="thumbnail-Holiday photo.jpg"' in thumb["Content-Disposition"]
    download_body(thumb)

    stored = Attachment.objects.get()
    (media / stored.thumbnail.name).write_bytes(b"not an image at all")
    opened: list[Any] = []
    real_open = FileSystemStorage.open

    def tracked(self: FileSystemStorage, name: str, mode: str = "rb") -> Any:
        opened.append(real_open(self, name, mode))
        return opened[-1]

    monkeypatch.setattr(FileSystemStorage, "open", tracked)
    assert _code(client.get(frame["thumb_url"])) == (404, "attachment_not_found")
    assert opened and all(handle.closed for handle in opened)
