"""Stored files go with their row: an attachment deleted on its own or with its conversation
(retention, a workspace's deletion — the cascade sends ``post_delete`` for every row) has its file
and thumbnail deleted from storage once the deletion commits (a rolled-back delete keeps them)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from attachments.models import Attachment


@receiver(post_delete, sender=Attachment, dispatch_uid="attachments.delete_files")
def _delete_files(sender: type[Attachment], instance: Attachment, **kwargs: Any) -> None:
    from attachments.services import attachment_files_delete

    names = [instance.file.name, instance.thumbnail.name]
    transaction.on_commit(lambda: attachment_files_delete(names=names), robust=True)
