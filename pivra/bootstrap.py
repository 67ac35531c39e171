"""Load settings early so a bad ``PIVRA_*`` variable stops start-up with one readable line."""

from __future__ import annotations

import os
import sys


def configure_or_exit() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pivra.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - touching a setting loads the module
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"pivra: configuration error: {exc}\n")
        raise SystemExit(2) from None
