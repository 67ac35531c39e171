"""PIVRA_STORAGE=s3: the settings build django-storages' S3 backend, and an attachment is stored in a
real (loopback) S3 server and served back through the download view — never from a bucket URL."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from django.test import Client
from moto.server import ThreadedMotoServer

from attachments.models import Attachment
from pivra.widget.tokens import visitor_token
from tests.attachment_helpers import PDF_BYTES, download_body, png_bytes, upload
from tests.handoff_helpers import new_visitor

pytestmark = pytest.mark.django_db

BUCKET = "pivra-test-attachments"
KEY_ID, SECRET = "test-key", "test-secret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1"
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _s3_env(endpoint: str) -> dict[str, str]:
    return {
        "PIVRA_STORAGE": "s3",
        "PIVRA_S3_BUCKET": BUCKET,
        "PIVRA_S3_ENDPOINT_URL": endpoint,
        "PIVRA_S3_ACCESS_KEY_ID": KEY_ID,
        "PIVRA_S3_SECRET_ACCESS_KEY": SECRET,
        "PIVRA_S3_REGION": "us-east-1",
    }


def test_the_settings_choose_the_s3_backend_from_the_environment(s3_endpoint: str, monkeypatch) -> None:
    """pivra.settings read in a fresh interpreter with the PIVRA_S3_* variables (as a deployment sets them)."""
    for name, value in _s3_env(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    probe = "import json; from pivra import settings as s; print(json.dumps(s.STORAGES['default']))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert '"storages.backends.s3.S3Storage"' in out
    assert f'"bucket_name": "{BUCKET}"' in out and s3_endpoint in out
    assert '"default_acl": null' in out  # the bucket's own policy keeps it private; no per-object ACL
    monkeypatch.delenv("PIVRA_S3_BUCKET")
    refused = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert refused.returncode != 0 and "PIVRA_S3_BUCKET" in refused.stderr


def _settings_storages(endpoint: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": endpoint,
                "access_key": KEY_ID,
                "secret_key": SECRET,
                "region_name": "us-east-1",
                "default_acl": None,
                "file_overwrite": False,
            },
        },
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    }


def test_an_attachment_is_stored_in_s3_served_through_pivra_and_deleted_with_its_row(
    s3_endpoint: str, settings, personas, django_capture_on_commit_callbacks
) -> None:
    settings.STORAGES = _settings_storages(s3_endpoint)
    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1"
    )
    visitor, _ = new_visitor(personas.chatbot)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}")
    image = client.post(
        "/api/widget/attachments", {"client_id": uuid.uuid4().hex, "file": upload("s.png", png_bytes())}
    )
    pdf = client.post("/api/widget/attachments", {"client_id": uuid.uuid4().hex, "file": upload("d.pdf", PDF_BYTES)})
    assert image.status_code == pdf.status_code == 200, (image.content, pdf.content)

    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    stored = {a.file.name for a in Attachment.objects.all()} | {a.thumbnail.name for a in Attachment.objects.all()}
    stored.discard("")
    assert keys >= stored and len(stored) == 3
    pdf_key = Attachment.objects.get(content_type="application/pdf").file.name
    assert s3.get_object(Bucket=BUCKET, Key=pdf_key)["Body"].read() == PDF_BYTES

    link = pdf.json()["event"]["data"]["attachment"]["url"]
    download = client.get(link)
    assert download.status_code == 200
    assert download_body(download) == PDF_BYTES
    thumb = client.get(image.json()["event"]["data"]["attachment"]["thumb_url"])
    assert thumb.status_code == 200 and download_body(thumb)[:2] in (b"\x89P", b"\xff\xd8")

    with django_capture_on_commit_callbacks(execute=True):
        Attachment.objects.all().delete()
    left = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert not (left & stored)
