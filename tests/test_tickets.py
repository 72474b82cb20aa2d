"""Socket tickets: issue and verify, expiry, tampering, re-checks, the endpoint, the origin check.

No server: the ticket view runs through Django's test client, the origin
check over crafted scopes (as tests/test_origins.py does).
"""

import asyncio
import base64
import json
import time

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core import signing
from django.urls import path, reverse
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from reactive_celery import identity, tickets
from reactive_celery.origins import OriginValidator, origin_verified
from reactive_celery.views import TicketView

TOKEN_AUTH = "rest_framework.authentication.TokenAuthentication"

# The ticket view for a project whose first authentication class is TokenAuthentication.
urlpatterns = [
    path("ticket", TicketView.as_view(authentication_classes=[TokenAuthentication])),
]


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="old-password")


def later(monkeypatch, seconds: float) -> None:
    """Move the clock ``signing`` reads ``seconds`` ahead."""
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + seconds)


# --- issue and verify ----------------------------------------------------------------


def test_a_ticket_carries_the_user_a_password_fingerprint_and_the_auth_class(alice):
    ticket = tickets.verify(tickets.issue(alice, TokenAuthentication))
    assert ticket is not None
    assert ticket.user == str(alice.pk)
    assert ticket.auth == TOKEN_AUTH
    assert tickets.holds(ticket, alice)


def test_a_ticket_does_not_carry_the_session_auth_hash_itself(alice):
    value = tickets.issue(alice, TokenAuthentication)
    payload = value.split(":")[0]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(claims) == {"user", "hash", "auth"}
    assert alice.get_session_auth_hash() not in value


def test_a_ticket_expires_after_ticket_ttl(alice, monkeypatch, settings):
    value = tickets.issue(alice, TokenAuthentication)
    later(monkeypatch, 59)
    assert tickets.verify(value) is not None
    later(monkeypatch, 61)
    assert tickets.verify(value) is None
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "TICKET_TTL": 300}
    assert tickets.verify(value) is not None


@pytest.mark.parametrize(
    "forge",
    [
        lambda value: value[:-1] + ("A" if value[-1] != "A" else "B"),  # the signature
        lambda value: "x" + value,  # the payload
        lambda value: signing.dumps(signing.loads(value, salt=tickets.SALT), salt="other"),
        lambda value: signing.dumps(
            {"user": "1", "hash": "h", "auth": TOKEN_AUTH}, key="not-the-secret", salt=tickets.SALT
        ),
        lambda value: signing.dumps(["1", "h", TOKEN_AUTH], salt=tickets.SALT),
        lambda value: signing.dumps(
            {"user": "1", "hash": "", "auth": TOKEN_AUTH}, salt=tickets.SALT
        ),
        lambda value: "",
        lambda value: "not a ticket at all",
        lambda value: "e30:1t:" + "A" * 43,  # base64 of {} with an invented timestamp
    ],
    ids=[
        "signature",
        "payload",
        "other salt",
        "other key",
        "not an object",
        "empty claim",
        "empty",
        "garbage",
        "made up",
    ],
)
def test_a_tampered_or_foreign_ticket_verifies_as_none(alice, forge):
    assert tickets.verify(forge(tickets.issue(alice, TokenAuthentication))) is None


def test_a_password_change_breaks_the_fingerprint(alice):
    ticket = tickets.verify(tickets.issue(alice, TokenAuthentication))
    alice.set_password("new-password")
    alice.save()
    assert not tickets.holds(ticket, alice)


def test_a_ticket_holds_for_its_own_user_only(alice):
    bob = User.objects.create_user("bob", password="old-password")
    ticket = tickets.verify(tickets.issue(alice, TokenAuthentication))
    assert not tickets.holds(ticket, bob)


# --- which views a ticket authenticates for --------------------------------------------


class StricterTokenAuthentication(TokenAuthentication):
    """A project's own token class: it authenticates as TokenAuthentication does, and more."""


def test_a_view_accepts_the_recorded_class_or_a_subclass_only():
    assert tickets.accepted(TOKEN_AUTH, [SessionAuthentication, TokenAuthentication])
    assert tickets.accepted(TOKEN_AUTH, [StricterTokenAuthentication])
    stricter = tickets.dotted_path(StricterTokenAuthentication)
    assert not tickets.accepted(stricter, [TokenAuthentication])
    assert not tickets.accepted(TOKEN_AUTH, [SessionAuthentication, BasicAuthentication])
    assert not tickets.accepted(TOKEN_AUTH, [])
    assert not tickets.accepted("rest_framework.authentication.Gone", [TokenAuthentication])


def test_only_users_loaded_for_a_ticket_carry_its_auth_class(alice):
    assert tickets.authenticator(alice) is None
    assert tickets.authenticator(AnonymousUser()) is None
    ticket = tickets.verify(tickets.issue(alice, TokenAuthentication))
    assert tickets.authenticator(tickets.mark(alice, ticket)) == TOKEN_AUTH


# --- the query parameter ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", None),
        (b"other=1", None),
        (b"ticket=abc", "abc"),
        (b"x=1&ticket=a%3Ab", "a:b"),
        (b"ticket=", ""),
        (b"ticket", ""),
        (b"ticket=a&ticket=b", ""),
    ],
)
def test_the_presented_ticket_is_read_from_the_query(query, expected):
    assert tickets.presented({"query_string": query}) == expected


# --- the socket's identity -------------------------------------------------------------


def test_a_socket_naming_a_ticket_is_its_user_whatever_its_cookie_says(alice):
    bob = User.objects.create_user("bob")
    value = tickets.issue(alice, TokenAuthentication)

    class Session:
        session_key = "bobs-session"

    scope = {"user": bob, "session": Session(), "query_string": f"ticket={value}".encode()}
    who = identity.identify(scope)
    assert who is not None and who.user == str(alice.pk) and who.session_key is None
    assert who.ticket == tickets.verify(value)
    assert identity.identify({**scope, "query_string": b"ticket=forged"}) is None
    assert identity.identify({**scope, "query_string": b"ticket="}) is None


def test_a_ticket_identity_gives_its_user_loaded_afresh_and_marked(alice):
    who = identity.identify({"query_string": f"ticket={tickets.issue(alice, TokenAuthentication)}"})
    User.objects.filter(pk=alice.pk).update(is_staff=True)
    user = identity.current_user(who)
    assert user is not None and user.pk == alice.pk and user.is_staff
    assert tickets.authenticator(user) == TOKEN_AUTH


@pytest.mark.parametrize("change", ["password", "inactive", "deleted"])
def test_a_ticket_identity_ends_with_a_password_change_deactivation_or_deletion(alice, change):
    who = identity.identify({"query_string": f"ticket={tickets.issue(alice, TokenAuthentication)}"})
    if change == "password":
        alice.set_password("new-password")
        alice.save()
    elif change == "inactive":
        User.objects.filter(pk=alice.pk).update(is_active=False)
    else:
        alice.delete()
    assert identity.current_user(who) is None


def test_a_ticket_outlives_its_ttl_once_the_socket_is_open(alice, monkeypatch):
    # TICKET_TTL bounds when a ticket may open a socket; the socket then lives by re-checks.
    who = identity.identify({"query_string": f"ticket={tickets.issue(alice, TokenAuthentication)}"})
    later(monkeypatch, 3600)
    assert identity.current_user(who) is not None


def test_a_ticket_of_a_malformed_pk_gives_none(db):
    ticket = tickets.Ticket(user="not-a-number", hash="h", auth=TOKEN_AUTH)
    assert identity.current_user(identity.Identity("not-a-number", None, ticket)) is None


# --- POST <prefix>/ticket ----------------------------------------------------------------


def post_ticket(client: APIClient, **headers):
    return client.post(reverse("reactive_celery:ticket"), **headers)


def test_the_endpoint_issues_a_ticket_recording_the_token_class(alice):
    token = Token.objects.create(user=alice)
    response = post_ticket(APIClient(), HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json()["expires_in"] == 60
    ticket = tickets.verify(response.json()["ticket"])
    assert ticket is not None and ticket.user == str(alice.pk) and ticket.auth == TOKEN_AUTH


def test_the_endpoint_records_a_session_when_the_request_came_with_one(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    # Session authentication enforces CSRF on the POST: a page elsewhere cannot get one.
    assert post_ticket(client).status_code == 403
    client = APIClient()
    client.force_login(alice)
    ticket = tickets.verify(post_ticket(client).json()["ticket"])
    assert ticket.auth == "rest_framework.authentication.SessionAuthentication"


def test_the_endpoint_answers_expires_in_from_the_setting(alice, settings):
    settings.REACTIVE_CELERY = {**settings.REACTIVE_CELERY, "TICKET_TTL": 15}
    token = Token.objects.create(user=alice)
    response = post_ticket(APIClient(), HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.json()["expires_in"] == 15


def test_the_endpoint_refuses_the_signed_out_and_bad_tokens(alice):
    # 403, not 401: DRF answers 401 only when its first class (Session here) has a challenge.
    response = post_ticket(APIClient())
    assert (response.status_code, response.json()["detail"]) == (
        403,
        "Authentication credentials were not provided.",
    )
    response = post_ticket(APIClient(), HTTP_AUTHORIZATION="Token not-a-token")
    assert (response.status_code, response.json()["detail"]) == (403, "Invalid token.")
    token = Token.objects.create(user=alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    response = post_ticket(APIClient(), HTTP_AUTHORIZATION=f"Token {token.key}")
    assert (response.status_code, response.json()["detail"]) == (403, "User inactive or deleted.")


@pytest.mark.urls("tests.test_tickets")
def test_the_endpoint_answers_401_with_the_challenge_of_a_token_first_view(alice):
    response = APIClient().post("/ticket")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


# --- the origin check ------------------------------------------------------------------


def handshake(origin=None, query=b""):
    headers = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {
        "type": "websocket",
        "scheme": "ws",
        "path": "/ws/reactive/",
        "query_string": query,
        "headers": headers,
        "server": ("127.0.0.1", 8000),
    }


def reaches_the_app(scope) -> bool:
    reached = []

    async def inner(scope, receive, send):
        reached.append(scope)

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        pass

    asyncio.run(OriginValidator(inner)(scope, receive, send))
    return bool(reached)


@pytest.mark.parametrize("query", [b"ticket=abc", b"x=1&ticket=", b"ticket"])
def test_a_handshake_without_origin_that_names_a_ticket_passes(query):
    assert origin_verified(handshake(query=query)) == (True, "")
    assert reaches_the_app(handshake(query=query))


def test_a_handshake_without_origin_or_ticket_is_still_refused():
    assert origin_verified(handshake(query=b"tickets=abc")) == (False, "")
    assert not reaches_the_app(handshake())


def test_a_ticket_does_not_excuse_a_foreign_origin():
    scope = handshake(origin="http://evil.example", query=b"ticket=abc")
    assert origin_verified(scope) == (False, "http://evil.example")
    assert not reaches_the_app(scope)
    assert reaches_the_app(handshake(origin="http://127.0.0.1:8000", query=b"ticket=abc"))
