"""The console's JavaScript catalogue: Django's JavaScriptCatalog for one language, in the URL.

``/dashboard/jsi18n/<lang>/`` serves the ``djangojs`` domain of Pivra's own catalogues (LOCALE_PATHS, not every
installed app's) for a code of ``settings.LANGUAGES``, and 404 for anything else. It holds no data, so no login is
needed, and the language comes from the URL only (never the session or Accept-Language), so a shared cache may keep
it: ``Cache-Control: public``, an ETag over the body and Last-Modified from the compiled ``.mo`` files; a browser
revalidates after ``MAX_AGE`` seconds and gets a 304 while the catalogue is unchanged. Nothing from the request is
ever written into the answer (the code is checked against the fixed list first).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import translation
from django.utils.cache import get_conditional_response, patch_cache_control
from django.utils.http import http_date
from django.views.decorators.http import require_safe
from django.views.i18n import JavaScriptCatalog

DOMAIN = "djangojs"
MAX_AGE = 3600  # an hour: a new catalogue (a deploy) reaches open consoles within that, a 304 after it

# (language, .mo signature) -> (body, etag): rendered once per process per compiled catalogue.
_rendered: dict[tuple[str, tuple[tuple[str, int, int], ...]], tuple[bytes, str]] = {}
_rendered_lock = threading.Lock()


def supported(code: str) -> bool:
    return code in {language for language, _name in settings.LANGUAGES}


def _locale_dirs() -> list[str]:
    return [str(path) for path in settings.LOCALE_PATHS]


def _mo_files(code: str) -> list[Path]:
    locale = translation.to_locale(code)
    return [Path(d) / locale / "LC_MESSAGES" / f"{DOMAIN}.mo" for d in _locale_dirs()]


def _signature(code: str) -> tuple[tuple[str, int, int], ...]:
    found = []
    for mo in _mo_files(code):
        try:
            stat = mo.stat()
        except OSError:
            continue
        found.append((str(mo), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


class _Catalogue(JavaScriptCatalog):
    """Only Pivra's own catalogues (LOCALE_PATHS): not the admin's or another app's ``djangojs`` messages."""

    def get(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        paths = _locale_dirs()
        if not paths:
            return super().get(request, *args, **kwargs)
        self.translation = translation.trans_real.DjangoTranslation(
            translation.get_language(), domain=DOMAIN, localedirs=paths
        )
        return self.render_to_response(self.get_context_data())


_catalogue_view = _Catalogue.as_view(domain=DOMAIN)


def _render(request: HttpRequest, code: str, signature: tuple[tuple[str, int, int], ...]) -> tuple[bytes, str]:
    key = (code, signature)
    found = _rendered.get(key)
    if found is None:
        with translation.override(code):
            response = _catalogue_view(request)
        assert isinstance(response, HttpResponse)  # JavaScriptCatalog renders a plain response
        body = response.content
        found = (body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
        with _rendered_lock:  # a threaded server may render two languages at once
            for stale in [k for k in _rendered if k[0] == code]:
                del _rendered[stale]  # an older compiled catalogue of this language
            _rendered[key] = found
    return found


@require_safe
def javascript_catalog(request: HttpRequest, lang: str) -> HttpResponse:
    if not supported(lang):
        raise Http404("No such language.")
    signature = _signature(lang)
    body, etag = _render(request, lang, signature)
    last_modified = max((mtime for _path, mtime, _size in signature), default=None)
    last_modified_s = int(last_modified // 1_000_000_000) if last_modified is not None else None
    not_modified = get_conditional_response(request, etag=etag, last_modified=last_modified_s)
    response = (
        not_modified if not_modified is not None else HttpResponse(body, content_type="text/javascript; charset=utf-8")
    )
    response["ETag"] = etag
    if last_modified_s is not None:
        response["Last-Modified"] = http_date(last_modified_s)
    patch_cache_control(response, public=True, max_age=MAX_AGE)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Language"] = lang  # the catalogue's language, not the request's
    return response
