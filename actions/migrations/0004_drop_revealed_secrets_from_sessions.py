"""Sessions written before the reveal-once secret moved to the cache may still hold a webhook
signing secret in plaintext (under ``pivra_actions_reveal``): remove that key from every stored
session. Undecodable rows (another SECRET_KEY, corrupt) are left alone; nothing can read them."""

from importlib import import_module
from typing import Any

from django.apps.registry import Apps
from django.conf import settings
from django.db import migrations

OLD_REVEAL_KEY = "pivra_actions_reveal"


def drop_reveal_key(apps: Apps, schema_editor: Any) -> None:
    session_model = apps.get_model("sessions", "Session")
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    rows = session_model.objects.using(schema_editor.connection.alias).only("session_key", "session_data")
    for row in rows.iterator(chunk_size=500):
        store = store_class(session_key=row.session_key)
        data = store.decode(row.session_data)  # {} when it cannot be decoded
        if OLD_REVEAL_KEY not in data:
            continue
        del data[OLD_REVEAL_KEY]
        session_model.objects.using(schema_editor.connection.alias).filter(
            session_key=row.session_key, session_data=row.session_data
        ).update(session_data=store.encode(data))
        prefix = getattr(store, "cache_key_prefix", None)  # cached_db keeps a copy in the cache too
        if prefix:
            try:
                store._cache.delete(prefix + row.session_key)
            except Exception:  # noqa: BLE001 - the cache copy expires on its own; the database row is clean
                pass


class Migration(migrations.Migration):
    dependencies = [
        ("actions", "0003_encrypt_secrets"),
        ("sessions", "0001_initial"),
    ]

    operations = [migrations.RunPython(drop_reveal_key, migrations.RunPython.noop, elidable=True)]
