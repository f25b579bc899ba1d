from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_sse", "0004_session_bound_tokens"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="storedevent",
            options={
                "permissions": [
                    ("publish_event", "Can publish events"),
                    ("view_live", "Can view the live streams page"),
                ],
                "verbose_name": "stored event",
            },
        ),
    ]
