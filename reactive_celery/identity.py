"""Who a socket is, checked again over time: its session, its user, its user's group.

Channels fixes ``scope["user"]`` at connect. An open socket must keep the rules
an HTTP request with the same cookie meets at every moment, so its session is
read again from the session store, exactly as Django's ``get_user`` reads it
for a request (the session exists, its auth hash matches the user's password,
the backend still returns the user, so an inactive one fails) on every
socket-side request, every heartbeat, and whenever the user is saved, deleted
or logged out: those changes reach the user's sockets through a per-user group.

A socket that presents a ticket (``tickets``) is its ticket's user, never its
cookie's; it is checked again by the same rules: the user still exists, the
backend would still let it authenticate (an inactive one fails), and its
password is the one the ticket was issued under.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest

from . import broadcast, tickets
from .conf import reactive_settings

__all__ = [
    "Identity",
    "SESSION_ENDED",
    "USER_CHANGED",
    "connect",
    "disconnect",
    "current_user",
    "identify",
    "user_group",
]

logger = logging.getLogger(__name__)

#: Group message: this session was logged out; sockets holding it close.
SESSION_ENDED = "reactive.session_ended"
#: Group message: the user changed (password, active flag, deleted); sockets re-check.
USER_CHANGED = "reactive.user_changed"


@dataclass(frozen=True)
class Identity:
    """What a socket proved at connect: its user's pk ("" if anonymous) and session key,
    or the ticket it presented instead of a session."""

    user: str
    session_key: str | None
    ticket: tickets.Ticket | None = None

    @property
    def anonymous(self) -> bool:
        """An anonymous socket holds nothing a session change could take away."""
        return not self.user


def user_group(user: str) -> str:
    """The channel-layer group of one user's sockets."""
    digest = hashlib.sha256(f"{reactive_settings.KEY_PREFIX}:user:{user}".encode()).hexdigest()
    return f"reactive.user.{digest[:32]}"


def identify(scope: Mapping[str, Any]) -> Identity | None:
    """The identity a socket connected with (called once, at connect).

    A socket that names a ticket is the ticket's user whatever its cookie says;
    None if that ticket is forged, malformed or expired.
    """
    presented = tickets.presented(scope)
    if presented is not None:
        ticket = tickets.verify(presented)
        return None if ticket is None else Identity(ticket.user, None, ticket)
    user = scope.get("user")
    session = scope.get("session")
    pk = str(user.pk) if user is not None and getattr(user, "is_authenticated", False) else ""
    key = getattr(session, "session_key", None) if session is not None else None
    return Identity(user=pk, session_key=key)


class _SessionRequest(HttpRequest):
    """The request ``auth.get_user`` reads: just a session."""

    def __init__(self, session: SessionBase) -> None:
        super().__init__()
        self.session = session


def current_user(identity: Identity) -> AbstractBaseUser | AnonymousUser | None:
    """The socket's user as its session gives it now (a blocking read); None if it no longer does.

    The user is loaded afresh, so permission checks see its flags as they are
    now. An invalid session is flushed, as Django does for a request whose
    password hash no longer matches.
    """
    if identity.anonymous:
        return AnonymousUser()
    if identity.ticket is not None:
        return _ticket_user(identity.ticket)
    if not identity.session_key:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    session: SessionBase = engine.SessionStore(identity.session_key)
    user = auth.get_user(_SessionRequest(session))
    if not user.is_authenticated or str(user.pk) != identity.user:
        return None
    return user


def _ticket_user(ticket: tickets.Ticket) -> AbstractBaseUser | None:
    """The ticket's user loaded now, if it may still authenticate and kept its password."""
    model = auth.get_user_model()
    try:
        user: Any = model._default_manager.get(pk=model._meta.pk.to_python(ticket.user))
    except (model.DoesNotExist, ValidationError):
        return None
    # The rule ModelBackend applies at login (is_active), which DRF's classes apply too.
    if not ModelBackend().user_can_authenticate(user) or not tickets.holds(ticket, user):
        return None
    return tickets.mark(user, ticket)


def _tell_user(user: str, message: dict[str, Any]) -> None:
    try:
        broadcast.send(group_sends=[(user_group(user), message)])
    except Exception as exc:
        # Heartbeats re-check every socket anyway; this only makes it prompt.
        logger.warning("Could not tell user %s's sockets to re-check: %s", user, exc)


def _on_logged_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and key:
        _tell_user(str(user.pk), {"type": SESSION_ENDED, "session": key})


def _on_user_written(sender: Any, instance: Any, **kwargs: Any) -> None:
    if kwargs.get("raw") or instance.pk is None:
        return
    pk = str(instance.pk)
    transaction.on_commit(lambda: _tell_user(pk, {"type": USER_CHANGED}), using=kwargs.get("using"))


def connect() -> None:
    """Connect the receivers; called from ``AppConfig.ready()``."""
    model = auth.get_user_model()
    user_logged_out.connect(_on_logged_out, dispatch_uid="reactive_celery.logged_out")
    post_save.connect(_on_user_written, sender=model, dispatch_uid="reactive_celery.user_saved")
    post_delete.connect(_on_user_written, sender=model, dispatch_uid="reactive_celery.user_deleted")


def disconnect() -> None:
    """Disconnect the receivers (tests, or a process that must stay silent)."""
    model = auth.get_user_model()
    user_logged_out.disconnect(dispatch_uid="reactive_celery.logged_out")
    post_save.disconnect(sender=model, dispatch_uid="reactive_celery.user_saved")
    post_delete.disconnect(sender=model, dispatch_uid="reactive_celery.user_deleted")
