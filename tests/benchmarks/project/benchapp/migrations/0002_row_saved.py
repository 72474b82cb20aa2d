from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("benchapp", "0001_initial")]

    operations = [
        migrations.AddField(model_name="row", name="saved", field=models.FloatField(default=0.0)),
    ]
