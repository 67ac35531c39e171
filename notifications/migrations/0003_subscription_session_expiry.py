from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_subscription_session"),
    ]

    operations = [
        migrations.AddField(
            model_name="pushsubscription",
            name="session_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
