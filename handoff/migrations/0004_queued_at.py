"""Handoff.queued_at (when it last started waiting in line), backfilled from requested_at, and the
indexes of the queue position (the line in order) and of the median wait (recent claims)."""

from django.db import migrations, models
from django.db.models import Q


class Migration(migrations.Migration):
    dependencies = [
        ("handoff", "0003_availability_office_hours_routing"),
    ]

    operations = [
        migrations.AddField(
            model_name="handoff",
            name="queued_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunSQL(
            "UPDATE handoff_handoff SET queued_at = requested_at WHERE queued_at IS NULL",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="handoff",
            name="queued_at",
            field=models.DateTimeField(),
        ),
        migrations.AddIndex(
            model_name="handoff",
            index=models.Index(
                condition=Q(status="pending"),
                fields=["workspace_id", "requested_at", "id"],
                name="handoff_line",
            ),
        ),
        migrations.AddIndex(
            model_name="handoff",
            index=models.Index(
                condition=Q(claimed_at__isnull=False),
                fields=["workspace_id", "claimed_at"],
                name="handoff_workspace_claimed",
            ),
        ),
    ]
