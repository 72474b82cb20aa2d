from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Row",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("group", models.IntegerField(db_index=True)),
                ("stamp", models.FloatField(default=0.0)),
                ("label", models.CharField(blank=True, max_length=40)),
            ],
            options={"ordering": ["id"]},
        ),
    ]
