from django.conf import settings
from django.db import models


class Task(models.Model):
    """One entry of the board."""

    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Newest first; the id breaks ties so every evaluation sees one order.
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.title
