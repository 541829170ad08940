"""The dashboard driven in headless Chromium against a running gateway, as an operator would."""
from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import MASTER

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).parent.parent / "docs"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Chromium is not installed (.ci/run installs Debian's chromium package)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def page():
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        yield page
        await browser.close()


async def test_operator_manages_keys_and_sees_spend(gateway, page, tmp_path):
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path   # docs/ only when asked to refresh them
    shots.mkdir(exist_ok=True)
    await page.goto(f"{gateway.url}/dashboard")
    await page.fill("#master", "wrong")
    await page.click("#signin-form button")
    await page.wait_for_selector("#signin-error:has-text('refused')")
    await page.fill("#master", MASTER)
    await page.click("#signin-form button")
    await page.wait_for_selector("#page-keys:not([hidden])")
    assert MASTER not in page.url

    # create a key and use the secret shown once for a real chat request
    await page.fill("#create-form input[name=name]", "from-dashboard")
    await page.fill("#create-form input[name=rpm]", "50")
    await page.fill("#create-form input[name=max_budget]", "2")
    await page.click("#create-form button[type=submit]")
    await page.wait_for_selector("#secret-box:not([hidden])")
    secret = (await page.text_content("#secret")).strip()
    assert secret.startswith("sk-")
    resp = await gateway.post(secret, {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200
    row = page.locator("#keys-table tr", has_text="from-dashboard")
    await row.wait_for()
    await page.screenshot(path=str(shots / "dashboard-keys.png"), full_page=True)

    # a limit above the cap shows the API's 400 inline
    await row.locator("input[name=rpm]").fill("5000")
    await row.locator("button", has_text="Save").click()
    await row.locator(".error", has_text="above the cap").wait_for()

    # spend page: today's bar carries the spend of that request
    await page.goto(f"{gateway.url}/dashboard#spend")
    await page.wait_for_selector("#day-chart svg")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    value = float(await page.get_attribute(f"#day-chart rect[data-day='{today}']", "data-value"))
    assert value == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)
    await page.wait_for_selector("#spend-model tbody tr:has-text('gpt')")
    await page.screenshot(path=str(shots / "dashboard-spend.png"), full_page=True)

    # routes page shows targets with live health
    await page.goto(f"{gateway.url}/dashboard#routes")
    await page.wait_for_selector("[data-route=gpt] td:has-text('up-model')")
    await page.screenshot(path=str(shots / "dashboard-routes.png"), full_page=True)

    # revoke with confirmation; the key is refused at once
    await page.goto(f"{gateway.url}/dashboard#keys")
    page.once("dialog", lambda dialog: dialog.accept())
    row = page.locator("#keys-table tr", has_text="from-dashboard")
    await row.locator("button", has_text="Revoke").click()
    await page.locator("#keys-table tr", has_text="from-dashboard").locator("td", has_text="revoked").wait_for()
    resp = await gateway.post(secret, {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "key_revoked"


async def test_dashboard_is_static_and_asks_for_nothing_outside(gateway):
    async with gateway.http.get(f"{gateway.url}/dashboard") as resp:
        html = await resp.text()
        assert resp.status == 200 and "text/html" in resp.headers["content-type"]
    assert "http://" not in html and "https://" not in html   # no CDN, nothing fetched from outside
    async with gateway.http.get(f"{gateway.url}/dashboard/static/nope.js") as resp:
        assert resp.status == 404
