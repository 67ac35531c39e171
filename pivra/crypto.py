"""Tenant secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with key rotation.

Stored values are ``fernet:<token>``; anything without the prefix is a row written before
encryption and is read as plaintext until ``rotate_secrets`` (or the data migration) rewrites it.

Keys: ``PIVRA_ENCRYPTION_KEYS`` (comma-separated Fernet keys), the first encrypts and all decrypt.
Keys derived from ``SECRET_KEY`` (and any ``SECRET_KEY_FALLBACKS``) always decrypt too, and the
one from ``SECRET_KEY`` encrypts when no key is configured, so moving from the derived key to
explicit keys needs no downtime: set the new key, restart, run ``manage.py rotate_secrets``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connections, models, router

logger = logging.getLogger(__name__)

PREFIX = "fernet:"


class SecretUnreadable(Exception):
    """A stored secret no configured key decrypts: a key was removed before ``rotate_secrets`` ran."""

    def __init__(self) -> None:
        super().__init__(
            "A stored secret cannot be decrypted with any key in PIVRA_ENCRYPTION_KEYS (or the key derived "
            "from PIVRA_SECRET_KEY): put the old key back at the end of the list, then run rotate_secrets."
        )


class UnreadableSecret(str):
    """What a model holds for a stored secret no configured key decrypts (a key removed too early).

    It compares equal to "" (falsy, so nothing uses it by accident: no key is sent, nothing signs),
    and carries the stored text so saving the row writes the ciphertext back unchanged: putting the
    old key back later still recovers it. Code that needs the secret checks ``secret_unreadable``."""

    stored: str

    def __new__(cls, stored: str) -> UnreadableSecret:
        value = super().__new__(cls, "")
        value.stored = stored
        return value

    def __repr__(self) -> str:
        return "UnreadableSecret()"


def secret_unreadable(value: object) -> bool:
    return isinstance(value, UnreadableSecret)


_logged_unreadable: set[str] = set()


def _log_unreadable_once(label: str) -> None:
    # Logged once per column and process: every page loading the row would otherwise repeat it.
    if label not in _logged_unreadable:
        _logged_unreadable.add(label)
        logger.error("%s: %s", label, SecretUnreadable())


def derived_key(secret_key: str) -> str:
    """A Fernet key from Django's SECRET_KEY; the label keeps it apart from every other use of it."""
    digest = hashlib.sha256(b"pivra.crypto.v1:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _configured_keys() -> tuple[str, ...]:
    explicit = [key for key in getattr(settings, "ENCRYPTION_KEYS", []) or [] if key]
    derived = [derived_key(settings.SECRET_KEY)]
    derived += [derived_key(old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", []) or []]
    keys: list[str] = []
    for key in [*explicit, *derived]:
        if key not in keys:
            keys.append(key)
    return tuple(keys)


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def secret_encrypt(plaintext: str) -> str:
    """``fernet:<token>`` under the first key; the empty string stays empty (nothing is set)."""
    if not plaintext:
        return ""
    token = _fernet(_configured_keys()).encrypt(plaintext.encode("utf-8"))
    return PREFIX + token.decode("ascii")


def secret_decrypt(stored: str) -> str:
    """The plaintext of a stored value; a legacy plaintext row is returned as it is."""
    if not stored or not stored.startswith(PREFIX):
        return stored
    try:
        return _fernet(_configured_keys()).decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, ValueError):
        raise SecretUnreadable from None


def secret_is_current(stored: str) -> bool:
    """Whether a stored value is already ciphertext under the first key (rotation skips it)."""
    if not stored:
        return True
    if not stored.startswith(PREFIX):
        return False
    keys = _configured_keys()
    try:
        Fernet(keys[0]).decrypt(stored[len(PREFIX) :].encode("ascii"))
    except (InvalidToken, ValueError):
        return False
    return True


class EncryptedTextField(models.TextField):
    """A text column holding ``secret_encrypt`` output; Python code only ever sees plaintext.

    Encryption is randomised, so lookups by value never match: filter on other columns."""

    description = "Text encrypted at rest (Fernet)"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        # One unreadable row must not break every query loading the model (widget, console,
        # deliveries): it loads as a marker, and only the code that uses the secret fails.
        if value is None:
            return None
        try:
            return secret_decrypt(value)
        except SecretUnreadable:
            _log_unreadable_once(f"{self.model._meta.label}.{self.name}")
            return UnreadableSecret(value)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableSecret):
            return value.stored  # written back as it was read
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return secret_encrypt(str(value))


def encrypted_fields(model: type[models.Model]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields if isinstance(field, EncryptedTextField)]


def _table(model: type[models.Model]) -> tuple[Any, str, str]:
    """The connection, and the quoted table and primary-key column names, for raw SQL on stored text."""
    connection = connections[router.db_for_write(model)]
    pk = model._meta.pk
    if pk is None:
        raise ValueError(f"{model.__name__} has no primary key")
    return connection, connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(pk.column)


def _column(model: type[models.Model], name: str) -> str:
    column = getattr(model._meta.get_field(name), "column", None)
    if not isinstance(column, str):
        raise ValueError(f"{model.__name__}.{name} is not a column")
    return column


def reencrypt_rows(model: type[models.Model], *, fields: Iterable[str] | None = None) -> int:
    """Rewrite every encrypted column of ``model`` under the first key, plaintext rows included.
    Works on historical models in migrations too. Each write is a compare-and-set on the stored
    text, so a row saved meanwhile keeps its newer value. Returns how many rows changed."""
    names = list(fields) if fields is not None else encrypted_fields(model)
    if not names:
        return 0
    columns = [_column(model, name) for name in names]
    connection, table, pk = _table(model)
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk}, {', '.join(quote(c) for c in columns)} FROM {table}")
        rows = cursor.fetchall()
    changed = 0
    for key, *stored in rows:
        row_changed = False
        for column, value in zip(columns, stored, strict=True):
            if not value or secret_is_current(value):
                continue
            fresh = secret_encrypt(secret_decrypt(value))
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET {quote(column)} = %s WHERE {pk} = %s AND {quote(column)} = %s",
                    [fresh, key, value],
                )
                row_changed = row_changed or cursor.rowcount > 0
        changed += row_changed
    return changed


def decrypt_rows(model: type[models.Model], *, fields: Iterable[str]) -> None:
    """Undo encryption in place (reversing the data migration): stored text becomes plaintext."""
    connection, table, pk = _table(model)
    for name in fields:
        column = connection.ops.quote_name(_column(model, name))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {pk}, {column} FROM {table}")
            rows = cursor.fetchall()
        for key, value in rows:
            if value and value.startswith(PREFIX):
                with connection.cursor() as cursor:
                    cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [secret_decrypt(value), key])


def unreadable_secrets() -> list[tuple[str, str, int]]:
    """``(model label, field, row count)`` for every encrypted column with rows no key decrypts."""
    found: list[tuple[str, str, int]] = []
    for model in apps.get_models():
        names = encrypted_fields(model)
        if not names:
            continue
        connection, table, _ = _table(model)
        for name in names:
            column = connection.ops.quote_name(_column(model, name))
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {column} FROM {table} WHERE {column} LIKE %s", [PREFIX + "%"])
                rows = cursor.fetchall()
            bad = 0
            for (value,) in rows:
                try:
                    secret_decrypt(value)
                except SecretUnreadable:
                    bad += 1
            if bad:
                found.append((model._meta.label, name, bad))
    return found


@checks.register(checks.Tags.security, deploy=True)
def check_secrets_readable(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check --deploy`` says so when a stored secret no longer decrypts (a key removed too early).

    A deploy check, not a default one: default checks run before every management command
    (``migrate`` included), and a deploy must still be able to migrate while the old key is being
    found, since the site itself keeps working (see from_db_value); it also scans every secret."""
    try:
        found = unreadable_secrets()
    except DatabaseError:
        return []  # no database yet (or not migrated): nothing stored to check
    return [
        checks.Error(
            f"{count} stored {label}.{name} value(s) cannot be decrypted with any configured key.",
            hint="Put the removed key back at the end of PIVRA_ENCRYPTION_KEYS (or SECRET_KEY_FALLBACKS), "
            "then run manage.py rotate_secrets.",
            id="pivra.E020",
        )
        for label, name, count in found
    ]
