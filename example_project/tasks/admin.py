from django.contrib import admin

from .models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "done", "owner", "created"]
    list_editable = ["done"]
    list_filter = ["done", "owner"]
    search_fields = ["title"]
