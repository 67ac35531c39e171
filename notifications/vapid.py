"""The VAPID key pair Web Push signs with (RFC 8292), read by settings before Django is set up.

Keys are the format every Web Push tool prints (``web-push generate-vapid-keys``): the private key
is the 32-byte P-256 scalar, the public key the 65-byte uncompressed point, both base64url without
padding. Unset, a private key is generated once into the data directory (like the secret key) and
kept, so subscriptions made against its public key keep working across restarts; it is never
printed. A test run has its own data directory, hence its own keys.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured

KEY_FILE_NAME = "vapid_private_key"
_SUBJECT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://[^\s/]+(/\S*)?)$")


def b64url_decode(value: str) -> bytes:
    """Base64url with or without padding; raises ValueError on anything else."""
    text = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9_\-]*={0,2}", text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def private_key_from_raw(private_raw: str) -> ec.EllipticCurvePrivateKey:
    scalar = b64url_decode(private_raw)
    if len(scalar) != 32:
        raise ValueError("a VAPID private key is 32 bytes")
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url_encode(point)


def generate_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))


def _key_file_read_or_create(key_file: Path) -> str:
    """The key in ``key_file``, created when absent: written whole into a private temporary file
    (``O_EXCL``, mode 0600 from the start) and linked into place, so two processes starting at once
    never both write, and nobody ever reads half a key. The loser of the race reads the winner's."""
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = key_file.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(generate_private_key())
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, key_file)  # fails if another process linked its key first
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    for _ in range(50):  # linked whole, so never empty; a copy made by other means may still be arriving
        private = key_file.read_text().strip()
        if private:
            return private
        time.sleep(0.1)
    raise ImproperlyConfigured(f"{key_file} is empty: delete it, or set PIVRA_VAPID_PRIVATE_KEY.")


def vapid_keys(*, private: str, public: str, data_dir: Path) -> tuple[str, str]:
    """(private, public) from ``PIVRA_VAPID_PRIVATE_KEY`` / ``PIVRA_VAPID_PUBLIC_KEY``, or a private key
    generated once into ``data_dir``. The public key is derived from the private one; when it is
    given too it must match (a mismatch would make every browser's subscription fail)."""
    if public and not private:
        raise ImproperlyConfigured(
            "PIVRA_VAPID_PUBLIC_KEY is set without PIVRA_VAPID_PRIVATE_KEY: set both or neither."
        )
    if not private:
        private = _key_file_read_or_create(data_dir / KEY_FILE_NAME)
    try:
        derived = public_key_of(private_key_from_raw(private))
    except ValueError:
        # Never echo the value: it is a secret.
        raise ImproperlyConfigured(
            "PIVRA_VAPID_PRIVATE_KEY must be a base64url P-256 private key (32 bytes), as "
            "`npx web-push generate-vapid-keys` prints it."
        ) from None
    if public:
        try:
            given = b64url_encode(b64url_decode(public))
        except ValueError:
            given = ""
        if given != derived:
            raise ImproperlyConfigured("PIVRA_VAPID_PUBLIC_KEY does not belong to PIVRA_VAPID_PRIVATE_KEY.")
    return private, derived


def vapid_subject(*, configured: str, default_email: str) -> str:
    """The ``sub`` claim push services use to reach the operator: a ``mailto:`` or ``https://`` URL."""
    subject = configured.strip() or f"mailto:{default_email}"
    if not _SUBJECT.match(subject):
        raise ImproperlyConfigured(
            f"PIVRA_VAPID_SUBJECT={subject!r} must be a mailto: address or an https:// URL "
            "(push services use it to contact you)."
        )
    return subject
