"""HTTP endpoints: ``POST <prefix>/unsubscribe`` (seed protocol), ``POST <prefix>/ticket``."""

from __future__ import annotations

from typing import Any, cast

import redis
from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import tickets
from .conf import reactive_settings
from .exceptions import StoreUnavailable
from .protocol import SUBSCRIBER_ID
from .store import subscribers
from .subscriptions import unsubscribe, user_key

__all__ = ["TicketView", "UnsubscribeView"]


class UnsubscribeView(APIView):
    """``POST unsubscribe?observer=<id>&subscriber=<id>`` ends one subscription."""

    permission_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        """Called for the unsubscribe POST; 404 for unknown ids, 403 for another user's."""
        try:
            return self._unsubscribe(request)
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable() from exc

    def _unsubscribe(self, request: Request) -> Response:
        oid = request.query_params.get("observer", "")
        sid = request.query_params.get("subscriber", "")
        if not oid or not sid:
            raise ValidationError({"detail": "Pass both ?observer=<id> and ?subscriber=<id>."})
        subscriber = subscribers.get(sid) if SUBSCRIBER_ID.fullmatch(sid) else None
        if subscriber is None:
            raise NotFound("Unknown subscriber id.")
        if subscriber.user != user_key(request.user):
            raise PermissionDenied("This subscriber id belongs to another user's socket.")
        if not subscribers.follows(sid, oid):
            raise NotFound("This subscriber does not observe that observer.")
        unsubscribe(oid, subscriber)
        return Response(status=204)


class TicketView(APIView):
    """``POST ticket``: a short-lived ticket a socket presents instead of a session cookie.

    Authenticated by the project's DRF authentication classes (token, Basic,
    session...); the ticket records which one, and a socket holding it may
    subscribe only to views that accept that class. 401 or 403 when signed out.
    """

    permission_classes = [IsAuthenticated]

    def post(self, request: Request) -> Response:
        """Called for the ticket POST: ``{"ticket": ..., "expires_in": TICKET_TTL}``."""
        user = cast(AbstractBaseUser, request.user)  # IsAuthenticated admitted only users
        ticket = tickets.issue(user, type(request.successful_authenticator))
        # A credential: no cache between here and the client may keep it.
        return Response(
            {"ticket": ticket, "expires_in": reactive_settings.TICKET_TTL},
            headers={"Cache-Control": "no-store"},
        )
