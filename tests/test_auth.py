"""Client keys over real HTTP: 401 for missing, malformed, unknown and revoked keys; 403 and 404 by model.

Every answer, errors included, carries `x-request-id`, and no error body or
header ever repeats a key.
"""
from __future__ import annotations

import openai
import pytest

from tests.conftest import MASTER, check_error

MSG = [{"role": "user", "content": "hi"}]
BODY = {"model": "gpt", "messages": MSG}


async def chat(gateway, authorization: str | None, body=BODY):
    headers = {"Authorization": authorization} if authorization is not None else {}
    resp = await gateway.http.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers)
    return resp, await resp.text()


def assert_no_secret(text: str, headers, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, "an error body repeats a key"
        assert secret[10:] not in text
        assert all(secret not in v for v in headers.values()), "a header repeats a key"


async def test_missing_malformed_and_unknown_keys_are_401(gateway, key, upstream):
    unknown = "sk-" + "A" * 43
    for authorization in (None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", key, f"Token {key}",
                          f"Bearer{key}", f"Bearer {unknown}", f"Bearer {key}x", f"Bearer {key[:-1]}",
                          "Bearer sk-", f"Bearer {key.upper()}"):
        resp, text = await chat(gateway, authorization)
        assert resp.status == 401, (authorization, text)
        err = check_error(await resp.json(), "invalid_api_key")
        assert err["type"] == "authentication_error" and err["param"] is None
        assert resp.headers["x-request-id"]
        assert_no_secret(text, resp.headers, key, unknown)
    assert upstream.requests == []
    assert await gateway.rows() == [], "no ledger row without a valid key"


async def test_key_is_checked_before_the_body(gateway, upstream):
    for body in (b"{not json", {"model": "no-such-model", "messages": MSG}, {"model": "gpt", "temperature": 9}):
        resp = await gateway.post(None, body)
        assert resp.status == 401
        check_error(await resp.json(), "invalid_api_key")


async def test_revoked_key_is_401_key_revoked(gateway):
    created = await gateway.create_key()
    key = created["key"]
    resp, _ = await chat(gateway, f"Bearer {key}")
    assert resp.status == 200
    async with gateway.http.delete(f"{gateway.url}/admin/keys/{created['id']}",
                                   headers={"Authorization": f"Bearer {MASTER}"}) as resp:
        assert resp.status == 200 and (await resp.json())["revoked_at"]
    for path, method in (("/chat/completions", "post"), ("/models", "get")):
        async with gateway.http.request(method, f"{gateway.base_url}{path}", json=BODY,
                                        headers={"Authorization": f"Bearer {key}"}) as resp:
            text = await resp.text()
            assert resp.status == 401, text
            err = check_error(await resp.json(), "key_revoked")
            assert err["type"] == "authentication_error"
            assert resp.headers["x-request-id"]
            assert_no_secret(text, resp.headers, key)
    rows = await gateway.rows()
    assert [r["status"] for r in rows] == ["ok"], "ledger rows stay; a revoked key books nothing new"


async def test_admin_revoke_needs_the_master_key(gateway):
    created = await gateway.create_key()
    for authorization in (None, f"Bearer {created['key']}", "Bearer wrong-master"):
        headers = {"Authorization": authorization} if authorization else {}
        async with gateway.http.delete(f"{gateway.url}/admin/keys/{created['id']}", headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["x-request-id"]
            assert_no_secret(await resp.text(), resp.headers, created["key"], MASTER)
    resp, _ = await chat(gateway, f"Bearer {created['key']}")
    assert resp.status == 200


async def test_model_not_allowed_is_403(gateway, upstream):
    key = (await gateway.create_key(models=["demo"]))["key"]
    for model in ("gpt", "gpt-alias", "claude"):
        resp, text = await chat(gateway, f"Bearer {key}", {"model": model, "messages": MSG})
        assert resp.status == 403, text
        err = check_error(await resp.json(), "model_not_allowed")
        assert err["type"] == "permission_error" and err["param"] == "model"
        assert resp.headers["x-request-id"]
        assert_no_secret(text, resp.headers, key)
    resp, _ = await chat(gateway, f"Bearer {key}", {"model": "demo", "messages": MSG})
    assert resp.status == 200
    assert upstream.requests == []
    rows = await gateway.rows()
    assert [(r["status"], r["http_status"], r["error_code"], r["route"]) for r in rows] == [
        ("rejected", 403, "model_not_allowed", "gpt"), ("rejected", 403, "model_not_allowed", "gpt"),
        ("rejected", 403, "model_not_allowed", "claude"), ("ok", 200, None, "demo")]


async def test_an_alias_is_allowed_through_its_route(gateway):
    key = (await gateway.create_key(models=["gpt"]))["key"]
    resp, text = await chat(gateway, f"Bearer {key}", {"model": "gpt-alias", "messages": MSG})
    assert resp.status == 200, text


async def test_unknown_model_is_404_before_the_models_list(gateway):
    restricted = (await gateway.create_key(models=["demo"]))["key"]
    everything = (await gateway.create_key())["key"]
    for key in (restricted, everything):
        for model in ("nope", "GPT", "gpt ", "up-model"):          # upstream model names are not routes
            resp, text = await chat(gateway, f"Bearer {key}", {"model": model, "messages": MSG})
            assert resp.status == 404, (model, text)
            err = check_error(await resp.json(), "model_not_found")
            assert err["type"] == "invalid_request_error" and err["param"] == "model"
            assert resp.headers["x-request-id"]
            assert_no_secret(text, resp.headers, key)
    rows = await gateway.rows()
    assert len(rows) == 8 and {(r["status"], r["http_status"], r["route"]) for r in rows} == {("rejected", 404, None)}


async def test_every_response_has_a_request_id(gateway, key):
    auth = {"Authorization": f"Bearer {key}"}
    requests = [
        ("post", "/v1/chat/completions", BODY, auth, 200),
        ("post", "/v1/chat/completions", {**BODY, "stream": True}, auth, 200),
        ("post", "/v1/chat/completions", {**BODY, "temperature": 9}, auth, 400),
        ("post", "/v1/chat/completions", BODY, {}, 401),
        ("post", "/v1/chat/completions", {**BODY, "model": "nope"}, auth, 404),
        ("get", "/v1/chat/completions", None, auth, 405),
        ("get", "/v1/models", None, auth, 200),
        ("get", "/v1/models", None, {}, 401),
        ("get", "/health", None, {}, 200),
        ("get", "/metrics", None, {}, 200),
        ("get", "/v1/no-such-endpoint", None, auth, 404),
        ("get", "/admin/keys", None, {}, 401),
        ("get", "/admin/keys", None, {"Authorization": f"Bearer {MASTER}"}, 200),
    ]
    ids = set()
    for method, path, body, headers, status in requests:
        async with gateway.http.request(method, f"{gateway.url}{path}", json=body, headers=headers) as resp:
            await resp.read()
            assert resp.status == status, (method, path)
            ids.add(resp.headers["x-request-id"])
            if status >= 400:
                check_error(await resp.json())
    assert len(ids) == len(requests), "each answer has its own request id"


async def test_request_id_matches_the_ledger_row(gateway, key):
    resp, _ = await chat(gateway, f"Bearer {key}", {**BODY, "top_p": 7})
    rows = await gateway.rows()
    assert rows[-1]["request_id"] == resp.headers["x-request-id"]


async def test_the_sdk_raises_its_own_errors(gateway, key):
    with pytest.raises(openai.AuthenticationError) as err:
        await gateway.sdk("sk-" + "b" * 43).chat.completions.create(model="gpt", messages=MSG)
    assert err.value.code == "invalid_api_key"
    restricted = (await gateway.create_key(models=["demo"]))["key"]
    with pytest.raises(openai.PermissionDeniedError) as err:
        await gateway.sdk(restricted).chat.completions.create(model="gpt", messages=MSG)
    assert err.value.code == "model_not_allowed"


async def test_bearer_scheme_is_case_insensitive(gateway, key):
    for scheme in ("bearer", "BEARER", "Bearer"):
        resp = await gateway.http.post(f"{gateway.base_url}/chat/completions",
                                       json={"model": "demo", "messages": [{"role": "user", "content": "x"}]},
                                       headers={"Authorization": f"{scheme} {key}"})
        assert resp.status == 200, scheme
    resp = await gateway.http.post(f"{gateway.base_url}/chat/completions", json={"model": "demo", "messages": []},
                                   headers={"Authorization": f"Basic {key}"})
    assert resp.status == 401
