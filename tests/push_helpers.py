"""A browser's side of Web Push for tests: its key pair and auth secret, and the decryption of what a
push service would hand it (RFC 8291 aes128gcm, via http_ece). Holds no tests."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from notifications.vapid import b64url_encode


@dataclass
class BrowserKeys:
    private: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        point = self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url_encode(point)

    @property
    def auth(self) -> str:
        return b64url_encode(self.secret)

    def subscription_json(self, endpoint: str) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives in the browser."""
        return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(body, private_key=self.private, auth_secret=self.secret, version="aes128gcm")
        decoded: dict[str, Any] = json.loads(plain)
        return decoded


def vapid_key_of(authorization: str) -> str | None:
    """The ``k=`` public key of a ``vapid t=…, k=…`` header whose JWT signature verifies, else None."""
    if not Vapid02.verify(authorization):
        return None
    params = dict(part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(","))
    return params.get("k")
