from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def pivra(request: HttpRequest) -> dict[str, Any]:
    return {"PIVRA_PUBLIC_URL": settings.PUBLIC_URL}
