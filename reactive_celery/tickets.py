"""Socket tickets: a signed-in identity handed to a socket that has no session cookie.

A client outside a browser (a script, a service, a mobile app) authenticates
with the project's DRF credentials (a token, Basic, a session) on ``POST
<prefix>/ticket`` and opens ``ws/reactive/?ticket=<ticket>``. The ticket is
``django.core.signing`` over::

    {"user": "<pk>", "hash": "<fingerprint of the session auth hash>", "auth": "<class>"}

signed with ``SECRET_KEY`` and a salt of its own, valid ``TICKET_TTL`` seconds
after it was issued (not single-use). ``auth`` is the dotted path of the DRF
authentication class that authenticated the ticket's request: a ticket socket
subscribes only to views whose ``authentication_classes`` hold that class or a
subclass of it, so it authenticates only as the view would.

``hash`` is a fingerprint of ``user.get_session_auth_hash()``, which changes
with the password: the socket's user is re-checked against it over time, as a
session's is (``identity.current_user``). A ticket is not an ambient
credential (a page cannot make a browser send it), so a handshake carrying one
needs no ``Origin`` (``origins``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.module_loading import import_string

from .conf import reactive_settings

__all__ = [
    "SALT",
    "TICKET_PARAM",
    "Ticket",
    "accepted",
    "authenticator",
    "dotted_path",
    "holds",
    "issue",
    "mark",
    "presented",
    "verify",
]

#: The query parameter of a socket's URL that carries a ticket (``ws/reactive/?ticket=``).
TICKET_PARAM = "ticket"
#: The salt of tickets' signatures: no other value signed with SECRET_KEY passes as one.
SALT = "reactive_celery.ticket"

#: Set on a user loaded for a ticket socket: the class the ticket records.
_AUTHENTICATOR_ATTRIBUTE = "_reactive_ticket_authenticator"


@dataclass(frozen=True)
class Ticket:
    """What a valid ticket says: its user's pk, the password fingerprint and the auth class."""

    user: str
    hash: str
    auth: str


def dotted_path(cls: type) -> str:
    """The import path of a class, as a ticket records it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _fingerprint(user: AbstractBaseUser) -> str:
    # The session auth hash itself never leaves the server: a ticket is readable.
    return salted_hmac(SALT, user.get_session_auth_hash(), algorithm="sha256").hexdigest()


def issue(user: AbstractBaseUser, authenticated_by: type) -> str:
    """A ticket for ``user``, authenticated by the DRF class ``authenticated_by``."""
    claims = {
        "user": str(user.pk),
        "hash": _fingerprint(user),
        "auth": dotted_path(authenticated_by),
    }
    return signing.dumps(claims, salt=SALT, compress=False)


def verify(value: str) -> Ticket | None:
    """The ticket's claims if its signature holds and it is younger than ``TICKET_TTL``."""
    try:
        claims = signing.loads(value, salt=SALT, max_age=reactive_settings.TICKET_TTL)
    except (signing.BadSignature, ValueError):
        # SignatureExpired is a BadSignature; ValueError: bytes that are not base64 or JSON.
        return None
    if not isinstance(claims, dict):
        return None
    fields = [claims.get(name) for name in ("user", "hash", "auth")]
    if not all(isinstance(claim, str) and claim for claim in fields):
        return None
    user, fingerprint, auth = (str(claim) for claim in fields)
    return Ticket(user=user, hash=fingerprint, auth=auth)


def holds(ticket: Ticket, user: AbstractBaseUser) -> bool:
    """Whether ``user`` (loaded now) still has the password the ticket was issued under."""
    return str(user.pk) == ticket.user and constant_time_compare(_fingerprint(user), ticket.hash)


def presented(scope: Mapping[str, Any]) -> str | None:
    """The ticket in a WebSocket scope's query string; "" if named without a value, None if absent.

    A socket that names a ticket at all never falls back to its session cookie.
    """
    raw = scope.get("query_string", b"")
    query = raw.decode("latin1") if isinstance(raw, bytes) else str(raw)
    values = parse_qs(query, keep_blank_values=True).get(TICKET_PARAM)
    if values is None:
        return None
    # Two tickets name nobody in particular.
    return values[0] if len(values) == 1 else ""


def mark(user: AbstractBaseUser, ticket: Ticket) -> AbstractBaseUser:
    """Record on ``user`` that it signed in by ``ticket``: a subscribe checks the view's classes."""
    setattr(user, _AUTHENTICATOR_ATTRIBUTE, ticket.auth)
    return user


def authenticator(user: Any) -> str | None:
    """The auth class a ticket socket's user signed in with; None for any other user."""
    value = getattr(user, _AUTHENTICATOR_ATTRIBUTE, None)
    return value if isinstance(value, str) else None


def accepted(auth: str, classes: Iterable[type]) -> bool:
    """Whether a view with these ``authentication_classes`` authenticates as ``auth`` would.

    True when one of them is the recorded class or a subclass of it.
    """
    try:
        recorded = import_string(auth)
    except ImportError:
        return False  # the class is gone since the ticket was issued
    return isinstance(recorded, type) and any(
        isinstance(cls, type) and issubclass(cls, recorded) for cls in classes
    )
