"""HTTP routes; include under a prefix of your choice.

path("api/queryobserver/", include("reactive_celery.urls"))
"""

from __future__ import annotations

from django.urls import path

from .views import TicketView, UnsubscribeView

__all__ = ["app_name", "urlpatterns"]

app_name = "reactive_celery"

urlpatterns = [
    path("unsubscribe", UnsubscribeView.as_view(), name="unsubscribe"),
    path("ticket", TicketView.as_view(), name="ticket"),
]
