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
    await page.wait_for_selector("#spend-model tbody tr:has-text('gpt')")   # its screenshot: the spend test below

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


# -- issue 18: signed out, admin off, empty states, the spend page, a phone's width ----------------------

def live_routes() -> str:
    """A priced mock route, another one, and one whose upstream is gone (its requests are errors)."""
    from tests.procs import free_port
    return f"""
providers:
  demo: {{dialect: mock}}
  gone: {{dialect: openai, base_url: "http://127.0.0.1:{free_port()}/v1", api_key: k}}
routes:
  demo-chat:
    targets: [{{provider: demo, model: chat, price: {{input: 0.15, output: 0.6}}}}]
  demo-echo:
    targets: [{{provider: demo, model: echo, price: {{input: 1, output: 1}}}}]
  broken:
    retries: 0
    targets: [{{provider: gone, model: m, price: {{input: 1, output: 1}}}}]
"""


async def sign_in(page, url: str) -> None:
    await page.goto(f"{url}/dashboard")
    await page.fill("#master", MASTER)
    await page.click("#signin-form button")
    await page.wait_for_selector("#page-keys:not([hidden])")


async def test_signed_out_there_is_no_navigation_and_there_is_a_favicon(gateway, page):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{gateway.url}/dashboard")
    await page.wait_for_selector("#signin:not([hidden])")
    assert not await page.is_visible("#nav") and not await page.is_visible("#signout")
    assert not await page.is_visible("#admin-off")            # the admin API is on: no such notice
    href = await page.get_attribute("link[rel=icon]", "href")
    for path in (href, "/favicon.ico"):
        async with gateway.http.get(f"{gateway.url}{path}") as resp:
            assert resp.status == 200 and resp.headers["content-type"] == "image/svg+xml"
            assert (await resp.text()).startswith("<svg")
    await sign_in(page, gateway.url)
    assert await page.is_visible("#nav")
    await page.click("#signout")
    await page.wait_for_selector("#signin:not([hidden])")
    assert not await page.is_visible("#nav")
    assert errors == []


async def test_admin_off_says_so_on_the_sign_in_page(start_gateway, page, tmp_path):
    gw = await start_gateway(master_key=None)
    await page.goto(f"{gw.url}/dashboard")
    notice = page.locator("#admin-off")
    await notice.wait_for()
    assert "admin API is disabled on this server: set GATEWAY_MASTER_KEY" in await notice.inner_text()
    assert not await page.is_visible("#signin-form") and not await page.is_visible("#nav")
    await page.screenshot(path=str(tmp_path / "admin-off.png"))


async def test_empty_states_before_any_key_or_request(start_gateway, page):
    gw = await start_gateway(live_routes())
    await sign_in(page, gw.url)
    await page.wait_for_selector("#keys-table tr.empty:has-text('No keys yet')")
    await page.goto(f"{gw.url}/dashboard#spend")
    await page.wait_for_selector("#spend-empty:not([hidden])")
    assert "No requests yet" in await page.text_content("#spend-empty")
    assert await page.text_content("#spend-title") == "Spend, all time"
    bars = page.locator("#day-chart rect.chart-bar")
    assert await bars.count() == 30                                   # 30 days, each a zero bar
    assert {await bars.nth(i).get_attribute("data-value") for i in range(30)} == {"0"}
    for table in ("#spend-model", "#spend-key"):
        assert await page.text_content(f"{table} tbody") == "No requests."
    await page.fill("#since", "2024-01-01")                           # the filter is in the titles
    await page.click("#spend-filter button[type=submit]")
    await page.wait_for_selector("#spend-title:has-text('Spend since 2024-01-01 (UTC)')")
    assert "No requests since 2024-01-01" in await page.text_content("#spend-empty")
    assert await bars.count() == 92                                   # at most 92 days back


async def test_spend_page_shows_refusals_errors_tokens_and_a_readable_chart(start_gateway, page, tmp_path):
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    gw = await start_gateway(live_routes())
    team = await gw.create_key(name="team-a", rpm=4, models=["demo-chat", "broken"])
    ci = await gw.create_key(name="ci", max_budget=0)
    long = " ".join(f"word{i}" for i in range(1500))                   # over a thousand prompt tokens
    statuses = [(await gw.post(team["key"], {"model": m, "messages": [{"role": "user", "content": c}]})).status
                for m, c in [("demo-chat", long), ("demo-chat", "hi"), ("broken", "hi"), ("demo-echo", "hi"),
                             ("demo-chat", "hi"), ("demo-chat", "hi")]]
    statuses.append((await gw.post(ci["key"], {"model": "demo-echo", "messages": [{"role": "user", "content": "x"}],
                                               "max_tokens": 5})).status)
    assert statuses == [200, 200, 502, 403, 200, 429, 429]
    await sign_in(page, gw.url)
    await page.goto(f"{gw.url}/dashboard#spend")
    row = page.locator("#spend-key tbody tr", has_text="team-a")
    await row.wait_for()
    heads = [h.strip() for h in await page.locator("#spend-key thead th").all_text_contents()]
    assert heads[:5] == ["Key", "Requests", "Refused", "Errors", "Prompt tokens"] and "USD" in heads
    cells = [c.strip() for c in await row.locator("td").all_text_contents()]
    assert cells[1:4] == ["4", "2", "1"]                               # admitted, refused (403, 429), errors
    assert "," in cells[4] and int(cells[4].replace(",", "")) > 1000    # tokens with thousands separators
    assert cells[-1].startswith("$0.00")
    ci_cells = [c.strip() for c in await page.locator("#spend-key tbody tr", has_text="ci").locator("td")
                .all_text_contents()]
    assert ci_cells[1:4] == ["0", "1", "0"]
    routes = {(await r.locator("td").first.text_content()): [c.strip() for c in await r.locator("td")
                                                                .all_text_contents()][1:4]
              for r in await page.locator("#spend-model tbody tr").all()}
    assert routes == {"demo-chat": ["3", "1", "0"], "broken": ["1", "0", "1"], "demo-echo": ["0", "2", "0"]}
    summary = await page.text_content("#spend-summary")
    assert "Requests4" in summary.replace(" ", "") and "Refused3" in summary.replace(" ", "")
    # the chart: axis titles, round y ticks with gridlines, today's bar and zero days around it
    chart = page.locator("#day-chart svg")
    assert await chart.locator("text.axis-title").all_text_contents() == ["USD", "day (UTC)"]
    ticks = await chart.locator("text.y-tick").all_text_contents()
    assert len(ticks) >= 3 and ticks[0] == "$0.00" and await chart.locator("line.grid").count() == len(ticks)
    assert await chart.locator("text.x-tick").count() >= 5
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert float(await chart.locator(f"rect[data-day='{today}']").get_attribute("data-value")) > 0
    assert [await b.get_attribute("data-value") for b in await chart.locator("rect.chart-bar").all()][:29] == ["0"] * 29
    assert await page.text_content("#chart-title") == f"Spend per day (UTC), " \
        f"{datetime.fromtimestamp(datetime.now(UTC).timestamp() - 29 * 86400, UTC):%Y-%m-%d} to {today}"
    await page.screenshot(path=str(shots / "dashboard-spend.png"), full_page=True)


async def test_every_page_is_usable_at_420_pixels(gateway, page, tmp_path):
    await gateway.create_key(name="a-key-with-a-rather-long-name", models=["gpt"])
    await page.set_viewport_size({"width": 420, "height": 860})
    await sign_in(page, gateway.url)
    for name, ready in [("keys", "#keys-table tbody tr"), ("spend", "#day-chart svg"),
                        ("routes", "[data-route=gpt]")]:
        await page.goto(f"{gateway.url}/dashboard#{name}")
        await page.wait_for_selector(ready)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, (name, width)                             # the page itself never scrolls sideways
        for box in await page.locator(f"#page-{name} .scroll").all():   # wide tables scroll in their own box
            assert (await box.bounding_box())["width"] <= 420
        assert await page.is_visible("#nav a[data-page=routes]")
        await page.screenshot(path=str(tmp_path / f"narrow-{name}.png"), full_page=True)
    await page.goto(f"{gateway.url}/dashboard#keys")
    await page.wait_for_load_state("networkidle")               # the table is drawn (and redrawn) by then
    from playwright.async_api import Error as PlaywrightError  # here: the module skips without playwright

    save = page.locator("#keys-table button", has_text="Save").first
    for attempt in range(5):   # a redraw of the table (hashchange and load both draw it) may detach the row
        try:
            await save.scroll_into_view_if_needed()             # reachable by scrolling its box sideways
            break
        except PlaywrightError as exc:
            if "not attached" not in str(exc) or attempt == 4:
                raise
    assert await save.is_visible()
