"""``manage.py rotate_secrets``: re-encrypt every tenant secret under the first encryption key.

Run it after putting a new key first in PIVRA_ENCRYPTION_KEYS (and restarting), before removing
an old key. Rows written before encryption existed are encrypted too. Safe to run again.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand

from pivra.crypto import encrypted_fields, reencrypt_rows


class Command(BaseCommand):
    help = "Re-encrypt every encrypted column (tenant AI keys, webhook secrets and URLs) with the first key."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            fields = encrypted_fields(model)
            if not fields:
                continue
            changed = reencrypt_rows(model, fields=fields)
            total += changed
            self.stdout.write(f"{model._meta.label}: {changed} row(s) re-encrypted ({', '.join(fields)}).")
        self.stdout.write(self.style.SUCCESS(f"Done: {total} row(s) now under the first key."))
