"""What an uploaded file really is, decided from its bytes — never its name or the sender's claim.

Images (PNG, JPEG, GIF, WebP) are fully decoded with Pillow, within a pixel budget that refuses
decompression bombs before their pixels are allocated, then re-encoded from the pixels alone: the
stored copy carries no EXIF (GPS, camera serial), no comments, no ICC profile and no trailing bytes
— whatever a crafted file hid in its metadata or after its image data is gone. Only what drawing
needs is kept (transparency, an animation's timing, loop and background). The ICC profile is
dropped on purpose: it is free-form bytes (a device's name, arbitrary text) and a tracking vector;
the price is that a wide-gamut photo may look slightly less saturated. The EXIF orientation is
applied first, so a phone photo is stored the right way up. PDFs are recognised by their ``%PDF-``
header and kept as sent: they are only ever downloaded (``Content-Disposition: attachment``),
never shown on our origin.

Decoding is the expensive part (a 24-megapixel RGBA image is ~100 MB), so at most
``PIVRA_ATTACHMENT_DECODES`` run at once per server process; an upload that cannot get a turn within
a few seconds is answered 503 ``busy`` with ``Retry-After``. Any error Pillow raises on a crafted
file is the "unreadable" refusal, never a 500.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import unicodedata
import warnings
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.utils.translation import gettext as _
from PIL import Image, ImageOps

from pivra.errors import DomainError

logger = logging.getLogger(__name__)

# Width * height (* frames for an animation) a decoded image may have: a 24-megapixel photo passes,
# a 30 KB PNG that inflates to gigabytes of pixels does not. Pillow's own bound is set to the same
# (once, here): it warns past it and refuses at twice it, after our check has already refused.
MAX_PIXELS = 24_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Pillow warns between MAX_PIXELS and twice it, when our own check refuses the image anyway: one
# process-wide filter (a per-call warnings.catch_warnings is not thread-safe).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
MAX_FRAMES = 100
# A progressive JPEG is decoded once per scan: thousands of tiny scans make a small file cost
# minutes of CPU. Real encoders write about 10.
MAX_JPEG_SCANS = 64
THUMBNAIL_SIZE = (320, 320)
JPEG_QUALITY = 88
# How long an upload waits for a decoding turn before it is told to come back.
DECODE_WAIT_SECONDS = 5.0
BUSY_RETRY_AFTER = 5
# Pillow's save() copies some of the source's info (a JPEG or GIF comment, a PNG's ICC profile)
# into the new file; only these keys stay.
_KEPT_INFO = ("transparency", "duration", "loop", "background")
_decodes = threading.BoundedSemaphore(settings.ATTACHMENT_DECODES)

# Magic bytes → (MIME type, Pillow format). Only these are accepted.
_IMAGE_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "PNG"),
    (b"\xff\xd8\xff", "image/jpeg", "JPEG"),
    (b"GIF87a", "image/gif", "GIF"),
    (b"GIF89a", "image/gif", "GIF"),
)
PDF = "application/pdf"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp", PDF: "pdf"}


class UnsupportedType(DomainError):
    status = 415

    def __init__(self, detail: str = "Only images (PNG, JPEG, GIF, WebP) and PDF files can be sent.") -> None:
        super().__init__("unsupported_type", detail)


class Busy(DomainError):
    status = 503

    def __init__(self) -> None:
        super().__init__(
            "busy",
            _("Pivra is busy processing other images. Try again in %(seconds)d s.") % {"seconds": BUSY_RETRY_AFTER},
        )
        self.retry_after = BUSY_RETRY_AFTER


@dataclass(frozen=True)
class Checked:
    """A file as it will be stored: its real type, the bytes to store, and for images a thumbnail."""

    content_type: str
    data: bytes
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    thumbnail_type: str | None = None


def sniff(head: bytes) -> tuple[str, str | None]:
    """(MIME type, Pillow format or None for a PDF) from the first bytes; UnsupportedType otherwise."""
    for magic, mime, fmt in _IMAGE_MAGIC:
        if head.startswith(magic):
            return mime, fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "WEBP"
    if head.startswith(b"%PDF-"):
        return PDF, None
    raise UnsupportedType()


def check_upload(file: IO[bytes]) -> Checked:
    """Read, identify and (for images) re-encode an upload the caller has already size-checked."""
    data = file.read()
    mime, fmt = sniff(data[:16])
    if fmt is None:
        return Checked(content_type=mime, data=data)
    if fmt == "JPEG" and data.count(b"\xff\xda") > MAX_JPEG_SCANS:  # before any decoding
        raise DomainError(
            "image_too_complex", _("This image is too complex to process. Save it again as a plain JPEG."), status=413
        )
    if not _decodes.acquire(timeout=DECODE_WAIT_SECONDS):
        raise Busy()
    try:
        return _image(data, mime=mime, fmt=fmt)
    finally:
        _decodes.release()


def _image(data: bytes, *, mime: str, fmt: str) -> Checked:
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
        width, height = image.size
        # Checked from the header, before a single pixel is decoded.
        if width * height > MAX_PIXELS:
            raise _too_many_pixels()
        frames = _frame_count(image, budget=MAX_PIXELS // max(1, width * height))
        if frames > MAX_FRAMES or width * height * frames > MAX_PIXELS:
            raise _too_many_pixels()
        image.load()
        return _reencode(image, data=data, mime=mime, fmt=fmt, frames=frames)
    except DomainError:
        raise
    except Image.DecompressionBombError:  # Pillow's own bound, past ours
        raise _too_many_pixels() from None
    except Exception as exc:  # a crafted file can make Pillow raise almost anything
        logger.info("unreadable %s upload refused: %s: %s", fmt, type(exc).__name__, str(exc)[:200])
        raise UnsupportedType("This image could not be read. Send a PNG, JPEG, GIF or WebP file.") from None


def _frame_count(image: Image.Image, *, budget: int) -> int:
    """Frames up to the first that breaks a bound (never ``n_frames``, which walks the whole file)."""
    if not getattr(image, "is_animated", False):
        return 1
    limit = min(MAX_FRAMES, budget) + 1
    count = 1
    try:
        while count < limit:
            image.seek(count)
            count += 1
    except EOFError:
        pass
    image.seek(0)
    return count


def _too_many_pixels() -> DomainError:
    return DomainError("image_too_large", _("This image has too many pixels. Send a smaller one."), status=413)


def _clean_info(image: Image.Image) -> None:
    image.info = {key: image.info[key] for key in _KEPT_INFO if key in image.info}


def _upright(image: Image.Image) -> Image.Image:
    """The photo's EXIF orientation applied to the pixels, in place (no second full-size image kept);
    a broken EXIF leaves the image as it is."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:
        logger.info("EXIF orientation ignored: %s: %s", type(exc).__name__, str(exc)[:200])
    return image


def _reencode(image: Image.Image, *, data: bytes, mime: str, fmt: str, frames: int) -> Checked:
    out = io.BytesIO()
    # No exif=, no icc_profile=, an empty comment: nothing but the pixels (and _KEPT_INFO).
    clean: dict[str, Any] = {"comment": b"", "icc_profile": None}
    if fmt == "GIF" and frames > 1:
        # An animation keeps its frames; each is rebuilt from pixels (no comments, no extensions).
        _clean_info(image)
        image.save(out, format="GIF", save_all=True, loop=image.info.get("loop", 0), optimize=False, **clean)
        image.seek(0)
        upright = image.convert("RGBA")
    else:
        upright = _plain_mode(_upright(image), fmt)
        _clean_info(upright)
        params: dict[str, Any] = {"format": fmt, **clean}
        if fmt == "JPEG":
            params.update(quality=JPEG_QUALITY, optimize=True)
        elif fmt == "WEBP":
            params.update(quality=JPEG_QUALITY)
        upright.save(out, **params)
    del image  # the decoded source: only the upright copy is needed from here
    stored = out.getvalue()
    width, height = upright.size
    thumb: Image.Image
    if fmt == "JPEG":
        # The thumbnail from the stored JPEG decoded at 1/8 scale (draft): no second full-size copy.
        del upright
        thumb = Image.open(io.BytesIO(stored), formats=["JPEG"])
        thumb.draft("RGB", THUMBNAIL_SIZE)
    else:
        thumb = upright  # shrunk in place (reduce() then resample): the full size is saved already
    thumb.thumbnail(THUMBNAIL_SIZE)
    thumb_out = io.BytesIO()
    if "A" in thumb.getbands() or "transparency" in thumb.info or thumb.mode == "P":
        thumb.convert("RGBA").save(thumb_out, format="PNG", optimize=True, icc_profile=None)
        thumb_type = "image/png"
    else:
        thumb.convert("RGB").save(thumb_out, format="JPEG", quality=80, **clean)
        thumb_type = "image/jpeg"
    return Checked(
        content_type=mime,
        data=stored,
        width=width,
        height=height,
        thumbnail=thumb_out.getvalue(),
        thumbnail_type=thumb_type,
    )


def _plain_mode(image: Image.Image, fmt: str) -> Image.Image:
    """A mode the target format writes (a CMYK or 16-bit image would otherwise fail to save)."""
    if fmt == "JPEG":
        return image if image.mode in ("RGB", "L") else image.convert("RGB")
    if fmt == "GIF":
        return image if image.mode in ("P", "L") else image.convert("P")
    if image.mode in ("RGB", "RGBA", "L", "LA", "P"):
        return image
    return image.convert("RGBA")


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def clean_name(name: str | None, *, content_type: str) -> str:
    """The sender's file name made safe to show and to offer as a download name: no directories,
    no control or path characters, at most 100 characters, and ending with the extension of the
    type found in the content (``invoice.html`` that is really a PDF downloads as ``invoice.html.pdf``)."""
    text = unicodedata.normalize("NFC", str(name or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    text = _UNSAFE_NAME.sub("_", text)
    text = " ".join(text.split()).strip(" ._") or "attachment"
    extension = EXTENSIONS[content_type]
    known = {"jpeg", "jpg"} if extension == "jpg" else {extension}
    stem, _, ext = text.rpartition(".")
    if not stem or ext.lower() not in known:
        text = f"{text[:90]}.{extension}"
    elif len(text) > 100:
        text = f"{stem[: 99 - len(ext)]}.{ext}"
    return text
