"""A socket's identity, read again from the session store as Django reads a request's."""

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.models import Session
from django.test import Client

from reactive_celery import identity


def session_of(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.mark.django_db
def test_a_valid_session_gives_the_user_loaded_afresh():
    alice = User.objects.create_user("alice", password="pw")
    who = identity.Identity(user=str(alice.pk), session_key=session_of(alice))
    User.objects.filter(pk=alice.pk).update(is_staff=True)  # changed since "connect"
    user = identity.current_user(who)
    assert user is not None and user.pk == alice.pk and user.is_staff


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["logout", "password", "inactive", "deleted", "other user"])
def test_a_session_that_no_longer_holds_gives_none(change):
    alice = User.objects.create_user("alice", password="pw")
    key = session_of(alice)
    who = identity.Identity(user=str(alice.pk), session_key=key)
    if change == "logout":
        Session.objects.filter(session_key=key).delete()
    elif change == "password":
        alice.set_password("new")
        alice.save()
    elif change == "inactive":
        User.objects.filter(pk=alice.pk).update(is_active=False)
    elif change == "deleted":
        alice.delete()
    else:
        bob = User.objects.create_user("bob")
        who = identity.Identity(user=str(bob.pk), session_key=key)
    assert identity.current_user(who) is None


def test_an_anonymous_socket_has_nothing_to_lose():
    who = identity.Identity(user="", session_key=None)
    assert who.anonymous and isinstance(identity.current_user(who), AnonymousUser)
    assert identity.current_user(identity.Identity(user="7", session_key=None)) is None


def test_identify_reads_the_scope_without_a_query():
    class Session:
        session_key = "abc"

    class User:
        pk = 5
        is_authenticated = True

    assert identity.identify({"user": User(), "session": Session()}) == identity.Identity(
        "5", "abc"
    )
    assert identity.identify({}) == identity.Identity("", None)


def test_each_user_has_a_group_of_its_own():
    assert identity.user_group("1") != identity.user_group("2")
    assert identity.user_group("1").startswith("reactive.user.")
    assert len(identity.user_group("1")) < 100  # channel-layer names are bounded
