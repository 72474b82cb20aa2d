from django.db import models


class Row(models.Model):
    """One benchmark row; ``stamp`` is the writer's ``time.time()`` of its last write,
    ``saved`` the server's just before that write's save (autocommit: its commit)."""

    group = models.IntegerField(db_index=True)
    stamp = models.FloatField(default=0.0)
    saved = models.FloatField(default=0.0)
    label = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"row {self.pk} of group {self.group}"
