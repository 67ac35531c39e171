"""A notice reaches several agents: each is told in the console language they chose (one wording and
one fan-out per language; an agent who follows the browser gets settings.LANGUAGE_CODE)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.utils import translation

from accounts.models import AgentProfile
from chatbots.models import Membership
from notifications.notices import handoff_notice
from notifications.services import notice_deliver, recipients_by_language
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request

pytestmark = pytest.mark.django_db


def _tagged(message: str) -> str:
    """gettext stand-in: shows which language was active when the text was worded (no catalogue needed)."""
    return f"[{translation.get_language()}] {message}"


def test_each_recipient_group_is_worded_in_its_own_language(personas: Personas, django_assert_max_num_queries) -> None:
    bot = enable_handoff(personas.chatbot)
    Membership.objects.filter(workspace=personas.workspace).update(availability=Membership.Availability.ONLINE)
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    AgentProfile.objects.create(user=personas.teammate, language="fr")
    notice = handoff_notice(conversation_id=conversation.pk)
    assert notice is not None and {personas.owner.pk, personas.teammate.pk} <= set(notice.user_ids)
    with django_assert_max_num_queries(1):
        groups = recipients_by_language(notice.user_ids)
    assert personas.teammate.pk in groups["fr"] and personas.owner.pk in groups["en"]
    with (
        mock.patch("notifications.notices._", _tagged),
        mock.patch("notifications.services.send_now_rollback_unsafe") as send,
        mock.patch("notifications.services.current_app.send_task"),
    ):
        notice_deliver(notice=notice)
    titles = {tuple(c.args[0]): c.args[1]["title"] for c in send.call_args_list}
    assert titles[(f"console-user.{personas.teammate.pk}",)].startswith("[fr] ")
    owner_group = next(g for g in titles if f"console-user.{personas.owner.pk}" in g)
    assert titles[owner_group].startswith("[en] ")
    assert f"console-user.{personas.teammate.pk}" not in owner_group
    assert notice.title.endswith("asks for a person · Acme bot")  # English outside any override
