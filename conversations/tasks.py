from __future__ import annotations

from celery import shared_task

from conversations.ai import conversation_reply_with_ai


@shared_task(acks_late=True, ignore_result=True)
def generate_ai_reply(conversation_id: int, reply_to_seq: int) -> None:
    conversation_reply_with_ai(conversation_id=conversation_id, reply_to_seq=reply_to_seq)
