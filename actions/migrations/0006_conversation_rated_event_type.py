# The conversation.rated event (issue 16): only the choices of the two type columns change.

from django.db import migrations, models

EVENT_TYPES = [
    ("conversation.escalated", "conversation.escalated"),
    ("handoff.claimed", "handoff.claimed"),
    ("handoff.timed_out", "handoff.timed_out"),
    ("lead.captured", "lead.captured"),
    ("handoff.resolved", "handoff.resolved"),
    ("handoff.transferred", "handoff.transferred"),
    ("handoff.released", "handoff.released"),
    ("conversation.rated", "conversation.rated"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("actions", "0005_issue15_event_types"),
    ]

    operations = [
        migrations.AlterField(
            model_name="delivery",
            name="event_type",
            field=models.CharField(choices=EVENT_TYPES, max_length=40),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="type",
            field=models.CharField(choices=EVENT_TYPES, max_length=40),
        ),
    ]
