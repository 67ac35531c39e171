"""An upload handler that stops reading a file past ``ATTACHMENT_MAX_BYTES``.

First in ``FILE_UPLOAD_HANDLERS``: without it a 2 GB upload would be copied to a temporary file
before any view could refuse it. The file is skipped (the rest of the body is drained, the form
stays readable) and the request is marked, so the upload views answer 413 ``file_too_large``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile

TOO_LARGE_MARK = "_pivra_upload_too_large"


class SizeLimitedUploadHandler(FileUploadHandler):
    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.ATTACHMENT_MAX_BYTES:
            if self.request is not None:
                setattr(self.request, TOO_LARGE_MARK, True)
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) holds the data


def upload_too_large(request: Any) -> bool:
    return bool(getattr(request, TOO_LARGE_MARK, False))
