"""OriginValidator over crafted handshake scopes, with a tiny inner app and no server."""

import asyncio
import logging

import pytest

from reactive_celery.origins import OriginValidator, origin_verified


def handshake(origin=None, host="127.0.0.1:8000", scheme="ws", extra=()):
    headers = [(b"host", host.encode())] if host is not None else []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(name.encode(), value.encode()) for name, value in extra]
    return {
        "type": "websocket",
        "scheme": scheme,
        "path": "/ws/reactive/",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
    }


def run(scope):
    """Drive one handshake; return what reached the inner app and what was sent back."""
    reached, sent = [], []

    async def inner(scope, receive, send):
        reached.append(scope)
        await receive()
        await send({"type": "websocket.accept"})

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    asyncio.run(OriginValidator(inner)(scope, receive, send))
    return reached, sent


def accepted(scope) -> bool:
    reached, sent = run(scope)
    if reached:
        assert sent == [{"type": "websocket.accept"}]
        return True
    assert [m["type"] for m in sent] == ["websocket.close"]
    return False


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws"),
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "wss"),
        ("http://localhost", "localhost", "ws"),
        ("https://testserver", "testserver", "wss"),
    ],
)
def test_the_request_s_own_origin_is_accepted(origin, host, scheme):
    assert accepted(handshake(origin, host, scheme))


@pytest.mark.parametrize(
    ("origin", "why"),
    [
        ("http://127.0.0.1:9999", "another port of the same host"),
        ("http://127.0.0.1", "the default port is not port 8000"),
        ("https://127.0.0.1:8000", "https is not the origin of a ws:// socket"),
        ("http://localhost:8000", "another allowed host is another origin"),
        ("http://evil.example", "another host"),
        ("null", "an opaque origin (sandboxed frame, file://)"),
        ("http://127.0.0.1:8000/", "an origin has no path"),
        ("http://127.0.0.1:8000,http://127.0.0.1:8000", "two Origin headers"),
    ],
)
def test_any_other_origin_is_refused(origin, why):
    assert not accepted(handshake(origin)), why


def test_two_origin_headers_are_refused():
    scope = handshake("http://127.0.0.1:8000", extra=[("origin", "http://127.0.0.1:8000")])
    assert not accepted(scope)


def test_a_missing_origin_is_refused():
    assert not accepted(handshake(None))


def test_wss_with_an_http_origin_is_refused():
    assert not accepted(handshake("http://127.0.0.1:8000", scheme="wss"))


def test_a_host_outside_allowed_hosts_has_no_own_origin():
    # The attacker controls both headers of a DNS-rebound request; ALLOWED_HOSTS decides.
    assert not accepted(handshake("http://evil.example:8000", host="evil.example:8000"))


def test_without_host_the_server_address_is_the_own_origin_as_in_django():
    # PEP 3333's reconstruction, which HttpRequest.get_host falls back to.
    assert accepted(handshake("http://127.0.0.1:8000", host=None))
    assert not accepted(handshake("http://127.0.0.1:9999", host=None))


def test_debug_with_empty_allowed_hosts_allows_localhost_as_django_does(settings):
    settings.DEBUG, settings.ALLOWED_HOSTS = True, []
    assert accepted(handshake("http://app.localhost:8000", host="app.localhost:8000"))
    assert not accepted(handshake("http://example.com", host="example.com"))


def test_csrf_trusted_origins_exact_entries_match_scheme_host_and_port(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "http://127.0.0.1:3000"]
    assert accepted(handshake("https://app.example.com"))
    assert accepted(handshake("http://127.0.0.1:3000"))
    assert not accepted(handshake("http://app.example.com"))
    assert not accepted(handshake("https://app.example.com:8443"))
    assert not accepted(handshake("https://other.example.com"))
    assert not accepted(handshake("http://127.0.0.1:3001"))


def test_csrf_trusted_origins_wildcards_match_subdomains_of_one_scheme(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.com", "http://*.example.net:8080"]
    assert accepted(handshake("https://app.example.com"))
    assert accepted(handshake("https://a.b.example.com"))
    assert accepted(handshake("https://example.com"))
    assert accepted(handshake("http://x.example.net:8080"))
    assert not accepted(handshake("http://app.example.com"))
    assert not accepted(handshake("https://app.example.com:444"))
    assert not accepted(handshake("https://evilexample.com"))
    assert not accepted(handshake("http://x.example.net"))
    assert not accepted(handshake("http://[::1"))  # unparsable: refused, not raised


def test_secure_proxy_ssl_header_makes_the_own_origin_https(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [("x-forwarded-proto", "https")]
    assert accepted(handshake("https://127.0.0.1:8000", extra=proxied))
    assert not accepted(handshake("http://127.0.0.1:8000", extra=proxied))
    assert accepted(handshake("http://127.0.0.1:8000"))  # no header: the scope's scheme


def test_x_forwarded_host_counts_only_with_use_x_forwarded_host(settings):
    forwarded = [("x-forwarded-host", "localhost")]
    assert not accepted(handshake("http://localhost", extra=forwarded))
    settings.USE_X_FORWARDED_HOST = True
    assert accepted(handshake("http://localhost", extra=forwarded))


def test_a_refusal_logs_one_line_naming_the_origin_and_host(caplog):
    with caplog.at_level(logging.WARNING, logger="reactive_celery.origins"):
        run(handshake("http://127.0.0.1:9999"))
        run(handshake(None))
    first, second = caplog.records
    assert first.name == "reactive_celery.origins"
    assert first.getMessage() == (
        "Refused WebSocket /ws/reactive/ (Host '127.0.0.1:8000'): Origin "
        "'http://127.0.0.1:9999' is not the site's own origin nor in CSRF_TRUSTED_ORIGINS"
    )
    assert (first.origin, first.host) == ("http://127.0.0.1:9999", "127.0.0.1:8000")
    assert "Origin missing" in second.getMessage()
    assert not first.exc_info


def test_refused_handshakes_are_closed_before_accept():
    reached, sent = run(handshake("http://evil.example"))
    assert reached == []
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_origin_verified_reports_the_origin_seen():
    assert origin_verified(handshake("http://127.0.0.1:8000")) == (True, "http://127.0.0.1:8000")
    assert origin_verified(handshake(None)) == (False, "")


def test_only_websocket_scopes_are_accepted():
    async def inner(scope, receive, send):  # pragma: no cover - never reached
        pass

    with pytest.raises(ValueError, match="websocket application only"):
        asyncio.run(OriginValidator(inner)({"type": "http"}, None, None))
