"""The admin API (SPEC section 8) against a running gateway: guard, key lifecycle, caps, spend."""
from __future__ import annotations

import logging

import pytest

from tests.conftest import BOTH_DBS, MASTER, check_error

ROUTES = """
settings:
  limits: {default_rpm: 7, default_tpm: 700, default_budget: 7, max_rpm: 50, max_tpm: 5000, max_budget: 20}
providers:
  demo: {dialect: mock}
routes:
  demo:
    targets: [{provider: demo, model: chat, price: {input: 1.0, output: 1.0}}]
  other:
    targets: [{provider: demo, model: echo}]
"""
HI = [{"role": "user", "content": "hi"}]
KEY_FIELDS = {"id", "name", "key_prefix", "rpm_limit", "tpm_limit", "max_budget", "budget_period", "models",
              "created_at", "revoked_at", "rpm_used", "tpm_used", "spend_period", "spend_total"}
AUTH = {"Authorization": f"Bearer {MASTER}"}


async def call(gw, method: str, path: str, json=None, headers=AUTH):
    async with gw.http.request(method, f"{gw.url}{path}", json=json, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_disabled_without_a_master_key(start_gateway):
    gw = await start_gateway(ROUTES, master_key=None)
    for method, path in [("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/keys/key_1"),
                         ("PATCH", "/admin/keys/key_1"), ("DELETE", "/admin/keys/key_1"), ("GET", "/admin/spend")]:
        status, body = await call(gw, method, path, json={"name": "x"} if method != "GET" else None)
        assert status == 404, (method, path)
        check_error(body)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": MASTER},
                                     {"Authorization": f"Bearer {MASTER}x"}, {"Authorization": "Bearer "}])
async def test_wrong_or_missing_master_key_is_401(start_gateway, headers):
    gw = await start_gateway(ROUTES)
    for method, path in [("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/spend")]:
        status, body = await call(gw, method, path, json={"name": "x"} if method == "POST" else None,
                                  headers=headers)
        assert status == 401
        assert check_error(body)["type"] == "authentication_error"
    assert (await call(gw, "GET", "/admin/keys"))[1]["data"] == []       # nothing was created


@BOTH_DBS
async def test_key_lifecycle_create_list_show_patch_revoke(start_gateway, caplog):
    caplog.set_level(logging.DEBUG)
    gw = await start_gateway(ROUTES)
    status, created = await call(gw, "POST", "/admin/keys", json={"name": "team-a", "models": ["demo"]})
    assert status == 201
    secret = created["key"]
    assert secret.startswith("sk-") and created["key_prefix"] == secret[:len(created["key_prefix"])]
    assert set(created) == KEY_FIELDS | {"key"}
    assert (created["rpm_limit"], created["tpm_limit"], created["max_budget"]) == (7, 700, 7)   # settings.limits
    assert created["budget_period"] == "never" and created["models"] == ["demo"] and created["revoked_at"] is None
    key_id = created["id"]

    status, listed = await call(gw, "GET", "/admin/keys")
    assert status == 200 and listed["object"] == "list" and [k["id"] for k in listed["data"]] == [key_id]
    status, shown = await call(gw, "GET", f"/admin/keys/{key_id}")
    assert status == 200 and set(shown) == KEY_FIELDS
    for body in (listed, shown):
        assert secret not in str(body) and "key_hash" not in str(body)

    assert (await gw.post(secret, {"model": "demo", "messages": HI})).status == 200
    assert (await gw.post(secret, {"model": "other", "messages": HI})).status == 403
    status, patched = await call(gw, "PATCH", f"/admin/keys/{key_id}",
                                 json={"rpm": 2, "tpm": 5000, "max_budget": 20, "budget_period": "daily",
                                       "models": None})
    assert status == 200 and set(patched) == KEY_FIELDS
    assert (patched["rpm_limit"], patched["tpm_limit"], patched["max_budget"]) == (2, 5000, 20)
    assert patched["budget_period"] == "daily" and patched["models"] is None
    assert patched["rpm_used"] == 1 and patched["tpm_used"] == 29 and patched["spend_total"] > 0
    # at once: the model is allowed now, and the second request of the minute is over rpm 2
    assert (await gw.post(secret, {"model": "other", "messages": HI})).status == 200
    resp = await gw.post(secret, {"model": "demo", "messages": HI})
    assert resp.status == 429 and resp.headers["x-ratelimit-limit-requests"] == "2"

    status, revoked = await call(gw, "DELETE", f"/admin/keys/{key_id}")
    assert status == 200 and revoked["revoked_at"] is not None
    resp = await gw.post(secret, {"model": "demo", "messages": HI})
    assert resp.status == 401 and check_error(await resp.json(), "key_revoked")
    assert (await call(gw, "GET", f"/admin/keys/{key_id}"))[1]["revoked_at"] == revoked["revoked_at"]
    rows = await gw.rows("SELECT status FROM requests ORDER BY id")
    assert [r["status"] for r in rows] == ["ok", "rejected", "ok", "rejected"]    # the revoked call wrote none
    assert secret not in caplog.text


@pytest.mark.parametrize("body, param", [
    ({"rpm": 51}, "rpm"), ({"tpm": 5001}, "tpm"), ({"max_budget": 20.01}, "max_budget"),
    ({"rpm": 0}, "rpm"), ({"rpm": 2.5}, "rpm"), ({"rpm": "10"}, "rpm"), ({"rpm": True}, "rpm"),
    ({"max_budget": -1}, "max_budget"), ({"budget_period": "weekly"}, "budget_period"),
    ({"models": "demo"}, "models"), ({"models": [1]}, "models"), ({"colour": "red"}, "colour"),
])
async def test_bad_or_over_cap_values_are_400_naming_the_field(start_gateway, body, param):
    gw = await start_gateway(ROUTES)
    status, created = await call(gw, "POST", "/admin/keys", json={"name": "a"})
    assert status == 201
    for method, path, sent in [("POST", "/admin/keys", {"name": "b", **body}),
                               ("PATCH", f"/admin/keys/{created['id']}", body)]:
        status, answer = await call(gw, method, path, json=sent)
        assert status == 400, (method, answer)
        error = check_error(answer)
        assert error["param"] == param and error["type"] == "invalid_request_error"
    status, listed = await call(gw, "GET", "/admin/keys")
    assert [(k["name"], k["rpm_limit"]) for k in listed["data"]] == [("a", 7)]     # nothing changed


async def test_caps_are_inclusive_and_the_message_names_the_cap(start_gateway):
    gw = await start_gateway(ROUTES)
    status, created = await call(gw, "POST", "/admin/keys", json={"name": "a", "rpm": 50, "tpm": 5000,
                                                                  "max_budget": 20})
    assert status == 201 and (created["rpm_limit"], created["tpm_limit"], created["max_budget"]) == (50, 5000, 20)
    status, answer = await call(gw, "PATCH", f"/admin/keys/{created['id']}", json={"rpm": 1000})
    assert status == 400 and "50" in answer["error"]["message"] and "settings.limits" in answer["error"]["message"]


async def test_create_needs_a_name_and_unknown_ids_are_404(start_gateway):
    gw = await start_gateway(ROUTES)
    status, answer = await call(gw, "POST", "/admin/keys", json={"rpm": 5})
    assert status == 400 and check_error(answer)["param"] == "name"
    async with gw.http.post(f"{gw.url}/admin/keys", data=b"{nope", headers=AUTH) as resp:
        assert resp.status == 400 and check_error(await resp.json(), "invalid_json")
    for method in ("GET", "PATCH", "DELETE"):
        status, answer = await call(gw, method, "/admin/keys/key_missing", json={} if method == "PATCH" else None)
        assert status == 404 and check_error(answer)


async def test_spend_endpoint_checks_its_query(start_gateway):
    gw = await start_gateway(ROUTES)
    for query, param in [("by=user", "by"), ("since=yesterday", "since"), ("since=2024-13-45", "since")]:
        status, answer = await call(gw, "GET", f"/admin/spend?{query}")
        assert status == 400 and check_error(answer)["param"] == param
    status, answer = await call(gw, "GET", "/admin/spend")
    assert status == 200 and answer == {"object": "list", "data": []}


async def test_patch_takes_the_key_objects_own_field_names_too(start_gateway):
    gw = await start_gateway(ROUTES)
    status, created = await call(gw, "POST", "/admin/keys", json={"name": "a", "rpm_limit": 3, "tpm_limit": 300})
    assert status == 201 and (created["rpm_limit"], created["tpm_limit"]) == (3, 300)
    status, patched = await call(gw, "PATCH", f"/admin/keys/{created['id']}", json={"rpm_limit": 4})
    assert status == 200 and patched["rpm_limit"] == 4
    status, answer = await call(gw, "PATCH", f"/admin/keys/{created['id']}", json={"rpm_limit": 4, "rpm": 5})
    assert status == 400 and check_error(answer)["param"] == "rpm_limit"
