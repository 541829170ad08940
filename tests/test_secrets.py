"""Secrets: a sweep of every kind of answer, and the database, checked for key material."""
from __future__ import annotations

import hashlib
import logging

from tests.conftest import KNOWN_SECRETS, MASTER
from tests.fakes import Behaviour

MSG = [{"role": "user", "content": "x"}]


async def test_no_key_material_in_any_answer_log_or_database(gateway, upstream, caplog):
    created = await gateway.create_key(rpm=20, tpm=200, models=["gpt", "demo", "claude"])
    secret = created["key"]
    secrets = [secret, *KNOWN_SECRETS]
    texts: list[str] = []

    async def grab(resp) -> None:
        texts.append(str(dict(resp.headers)) + await resp.text())

    echo = "rejected key upstream-secret-key-123 / Bearer upstream-secret-key-123 / sk-ant-upstream-secret"
    with caplog.at_level(logging.DEBUG):
        await grab(await gateway.post(secret, {"model": "gpt", "messages": MSG}))
        await grab(await gateway.post(secret, {"model": "gpt", "messages": MSG, "stream": True}))
        for status in (400, 401, 403, 422, 500):
            upstream.queue(*[Behaviour(status=status, json={"error": {"message": echo}})] * 3)
            await grab(await gateway.post(secret, {"model": "gpt", "messages": MSG}))
        upstream.queue(*[Behaviour(status=401, json={"type": "error", "error": {"type": "x", "message": echo}})] * 4)
        await grab(await gateway.post(secret, {"model": "claude", "messages": MSG}))
        await grab(await gateway.post(secret, {"model": "gpt", "messages": MSG, "temperature": 9}))
        await grab(await gateway.post(secret, {"model": "reasoner", "messages": MSG}))
        await grab(await gateway.post(secret, {"model": "nope", "messages": MSG}))
        await grab(await gateway.post(secret, {"model": "gpt", "messages": [{"role": "user", "content": "w " * 300}]}))
        await grab(await gateway.post(secret + "x", {"model": "gpt", "messages": MSG}))
        await grab(await gateway.post(secret, b"{not json"))
        for path in ("/admin/keys", f"/admin/keys/{created['id']}", "/admin/spend?by=key", "/admin/routes"):
            async with gateway.http.get(gateway.url + path, headers={"Authorization": f"Bearer {MASTER}"}) as resp:
                await grab(resp)
        async with gateway.http.get(gateway.url + "/metrics") as resp:
            await grab(resp)
    logs = [r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records]
    for text in texts + logs:
        for s in secrets:
            assert s not in text, (s, text[:300])
    raw_db = b"".join(p.read_bytes() for p in gateway.db_path.parent.glob(gateway.db_path.name + "*"))
    assert secret.encode() not in raw_db and MASTER.encode() not in raw_db
    rows = await gateway.rows(f"SELECT key_hash FROM api_keys WHERE id = '{created['id']}'")
    assert rows[0]["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
