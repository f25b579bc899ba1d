from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_sse", "0003_streamtoken"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="streamtoken",
            options={"verbose_name": "stream token"},
        ),
        migrations.AddField(
            model_name="streamtoken",
            name="session_key",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        # Rows from before this migration are tokens already used.
        migrations.AddField(
            model_name="streamtoken",
            name="used",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="streamtoken",
            name="used",
            field=models.BooleanField(default=False),
        ),
        migrations.CreateModel(
            name="SessionRotation",
            fields=[
                ("old", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("new_key", models.CharField(max_length=255)),
                ("created", models.DateTimeField(db_index=True)),
            ],
            options={
                "verbose_name": "rotated session",
            },
        ),
    ]
