"""Files for attachment tests: real images (with EXIF and GPS when asked), a PDF, and impostors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

# The smallest valid PDF a viewer opens: one empty page.
PDF_BYTES = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
HTML_BYTES = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def png_bytes(size: tuple[int, int] = (640, 480), color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def jpeg_with_gps(size: tuple[int, int] = (400, 200), *, orientation: int = 6) -> bytes:
    """A JPEG whose EXIF has a GPS position, a camera model and an orientation (6: turn 90° to show)."""
    image = Image.new("RGB", size, (200, 40, 40))
    exif = Image.Exif()
    exif[0x0110] = "Spy Camera 3000"  # Model
    exif[ORIENTATION] = orientation
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def bomb_png(size: tuple[int, int] = (10_000, 10_000)) -> bytes:
    """Megapixels of one colour (100 by default): a few KB on the wire, hundreds of MB once decoded."""
    out = io.BytesIO()
    Image.new("1", size).save(out, format="PNG", optimize=True)
    return out.getvalue()


def upload(name: str, data: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def filesystem_storages(root: Path) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root), "base_url": None},
        },
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    }


def download_body(response: Any) -> bytes:
    """A download's bytes. The view streams the file through an async iterator (never one whole read)."""
    assert response.streaming and response.is_async, "a download is streamed asynchronously"

    async def collect() -> bytes:
        return b"".join([bytes(chunk) async for chunk in response.streaming_content])

    return bytes(async_to_sync(collect)())


MARKER = b"PIVRA-SECRET-MARKER-16"


def many_scan_jpeg(scans: int = 80) -> bytes:
    """A progressive JPEG whose last scan is repeated ``scans`` times: a few KB that a decoder would
    process once per scan (the scan-bomb shape)."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 90)).save(out, format="JPEG", progressive=True)
    data = out.getvalue()
    last = data.rindex(b"\xff\xda")
    eoi = data.rindex(b"\xff\xd9")
    return data[:last] + data[last:eoi] * scans + data[eoi:]


def images_with_metadata() -> dict[str, bytes]:
    """Images whose metadata hides MARKER: a JPEG comment (COM) and ICC profile (APP2), a GIF
    comment (one frame and animated), a PNG ICC profile (iCCP, compressed: found by its chunk name)."""
    rgb = Image.new("RGB", (64, 48), (200, 30, 30))
    files: dict[str, bytes] = {}
    out = io.BytesIO()
    rgb.save(out, format="JPEG", comment=MARKER, icc_profile=MARKER * 4)
    files["jpeg"] = out.getvalue()
    out = io.BytesIO()
    rgb.convert("P").save(out, format="GIF", comment=MARKER)
    files["gif"] = out.getvalue()
    out = io.BytesIO()
    frames = [Image.new("P", (32, 32), i) for i in (1, 5)]
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], comment=MARKER, duration=100)
    files["gif-animated"] = out.getvalue()
    out = io.BytesIO()
    rgb.save(out, format="PNG", icc_profile=MARKER * 4)
    files["png"] = out.getvalue()
    return files
