from __future__ import annotations

from typing import Any

from django.db import migrations

from chatbots.plans import upsert_default_plans


def create_plans(apps: Any, schema_editor: Any) -> None:
    upsert_default_plans(apps.get_model("chatbots", "Plan"))


class Migration(migrations.Migration):
    dependencies = [("chatbots", "0001_initial")]
    operations = [migrations.RunPython(create_plans, migrations.RunPython.noop)]
