"""Events stored before agents had a public name carry the agent's username, which a reconnecting
widget would replay to the visitor: rewrite them to the name visitors now see (first name, else
"Support agent"). Lives here because the handoff app owns the "joined the conversation" line."""

from typing import Any

from django.db import migrations
from django.db.models import F

UNNAMED_AGENT = "Support agent"  # conversations.agent_names.UNNAMED_AGENT, frozen for this migration


def forwards(apps: Any, schema_editor: Any) -> None:
    Event = apps.get_model("conversations", "Event")
    User = apps.get_model("auth", "User")
    stale = Event.objects.filter(agent__isnull=False, agent_name=F("agent__username"))
    for agent_id in stale.values_list("agent_id", flat=True).distinct():
        agent = User.objects.get(pk=agent_id)
        public = (agent.first_name or "").strip() or UNNAMED_AGENT
        if public == agent.username:
            continue
        stale.filter(
            agent_id=agent_id, kind="handoff.claimed", text=f"{agent.username} joined the conversation."
        ).update(text=f"{public} joined the conversation.")
        stale.filter(agent_id=agent_id).update(agent_name=public)


class Migration(migrations.Migration):
    dependencies = [
        ("handoff", "0001_initial"),
        ("conversations", "0002_event_created_index"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
