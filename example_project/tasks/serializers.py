from rest_framework import serializers

from .models import Task


class TaskSerializer(serializers.ModelSerializer):
    # Read through the join with auth_user, so renaming or deleting a user
    # re-evaluates the observers too: dependencies come from the SQL that ran.
    owner_username = serializers.CharField(source="owner.username", read_only=True, default=None)

    class Meta:
        model = Task
        fields = ["id", "title", "done", "owner", "owner_username", "created"]
