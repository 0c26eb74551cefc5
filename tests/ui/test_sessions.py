"""What the dashboard's cookie holds and how it travels: a signed session token, never the
API key; tampered, expired or revoked sessions are sent to sign in; behind a TLS proxy
(KILN_PUBLIC_URL) the cookie is Secure and forms from the public origin pass; every /ui
answer carries a Content Security Policy and refuses to be framed."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.auth.ui_sessions import issue_token, server_secret
from app.core.config import Settings, SettingsError
from app.main import create_app
from tests.conftest import bearer, make_settings
from tests.helpers import ui_sign_in

PUBLIC = "https://kiln.example.com"


def signed_out(client: TestClient, token: str) -> bool:
    client.cookies.clear()
    client.cookies.set("kiln_ui_session", token, path="/ui")
    answer = client.get("/ui/jobs", follow_redirects=False)
    return answer.status_code == 303 and answer.headers["location"] == "/ui/login"


def test_the_cookie_holds_a_session_token_not_the_key(
    client: TestClient, keys: dict[str, str]
) -> None:
    token = ui_sign_in(client, keys["admin"])
    assert keys["admin"] not in token and keys["admin"].removeprefix("kiln_") not in token
    assert client.get("/ui/jobs").status_code == 200
    # The token opens the dashboard only: it is no API key.
    assert client.get("/v1/models", headers=bearer(token)).status_code == 401


def test_a_tampered_or_expired_session_is_sent_to_sign_in(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    token = ui_sign_in(client, keys["read"])
    key_id, expires, mac = token.split(".")
    other_key = ui_sign_in(client, keys["write"]).split(".")[0]
    for forged in (
        f"{other_key}.{expires}.{mac}",  # another key's id under this MAC
        f"{key_id}.{int(expires) + 86_400}.{mac}",  # a later expiry
        f"{key_id}.{expires}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}",  # one MAC character
        "1.2.3",
        "x" * 5000,
    ):
        assert signed_out(client, forged), forged
    secret = server_secret("", settings.ui_secret_path)
    from app.auth import hash_secret

    expired = issue_token(secret, int(key_id), hash_secret(keys["read"]), -1)
    assert signed_out(client, expired)
    assert not signed_out(client, token)  # the genuine one still works


def test_the_secret_is_private_and_shared_by_gateways_on_one_data_dir(
    client: TestClient, keys: dict[str, str], settings: Settings
) -> None:
    token = ui_sign_in(client, keys["read"])
    assert stat.S_IMODE(settings.ui_secret_path.stat().st_mode) == 0o600
    with TestClient(create_app(settings, run_reaper=False)) as second:
        second.cookies.set("kiln_ui_session", token, path="/ui")
        assert second.get("/ui/jobs").status_code == 200


@pytest.fixture
def behind_proxy(settings: Settings) -> Iterator[TestClient]:
    proxied = make_settings(settings.data_dir, settings.database_url, public_url=PUBLIC + "/")
    with TestClient(create_app(proxied, run_reaper=False)) as client:
        yield client


def test_behind_a_tls_proxy_the_cookie_is_secure_and_public_forms_pass(
    behind_proxy: TestClient, keys: dict[str, str]
) -> None:
    answer = behind_proxy.post(
        "/ui/login", data={"key": keys["write"]}, headers={"Origin": PUBLIC}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    assert "Secure" in answer.headers["set-cookie"]  # though this request came over http
    refused = behind_proxy.post("/ui/logout", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    signed_off = behind_proxy.post("/ui/logout", headers={"Origin": PUBLIC}, follow_redirects=False)
    assert signed_off.status_code == 303


@pytest.mark.parametrize("bad", ["kiln.example.com", "ftp://kiln.example.com", "https://"])
def test_a_public_url_that_is_not_one_is_refused_at_start(settings: Settings, bad: str) -> None:
    with pytest.raises(SettingsError, match=r"KILN_PUBLIC_URL: .* is not a URL such as https://"):
        make_settings(settings.data_dir, settings.database_url, public_url=bad)


@pytest.mark.parametrize("path", ["/ui/login", "/ui/jobs", "/ui/static/ui.css"])
def test_every_dashboard_answer_has_a_policy_and_refuses_framing(
    client: TestClient, path: str
) -> None:
    answer = client.get(path, follow_redirects=False)
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy
    assert "'unsafe-eval'" not in policy  # only a page with a WebGL chart allows it
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in client.get("/v2/health/live").headers


def test_a_session_ends_when_its_lifetime_does(settings: Settings, keys: dict[str, str]) -> None:
    brief = make_settings(settings.data_dir, settings.database_url, ui_session_s=1)
    with TestClient(create_app(brief, run_reaper=False)) as client:
        token = ui_sign_in(client, keys["read"])
        assert client.get("/ui/jobs").status_code == 200
        time.sleep(max(0.0, int(token.split(".")[1]) - time.time()) + 1.1)
        assert signed_out(client, token)
