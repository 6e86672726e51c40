"""The web console in a real browser: the system's Chromium driven by Playwright.

Run by tests/api/console_browser.rs against a real server it has filled through the five
surfaces' APIs. One argument: a JSON object with the server's base URL, keys (admin,
member, viewer), the resources it made, the actors of the profile's versions, the gateway
token no page may show, and whether NATS is configured. With FLEETLEDGER_CONSOLE_SCREENSHOTS
set to a directory it also writes the README's screenshots there.

Prints "ok" when every check passed; any failed check raises.
"""

import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"

args = json.loads(sys.argv[1])
BASE = args["base"]
PROFILE = args["resources"]["profile"]
TOKEN = args["gateway_token"]
SHOTS = os.environ.get("FLEETLEDGER_CONSOLE_SCREENSHOTS")

expect.set_options(timeout=10_000)


def api(method, path, key, body=None):
    """A call to the JSON API, answered as (status, parsed body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("Authorization", "Bearer " + key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def revisions(key):
    status, body = api("GET", f"/api/v1/ledger/resources/profile/{PROFILE}/revisions", key)
    assert status == 200, body
    return body["revisions"]


seen_pages = []


def no_secret(page: Page):
    """No page ever carries the gateway's token (or any sealed secret's ciphertext)."""
    html = page.content()
    seen_pages.append(page.url)
    assert TOKEN not in html, f"{page.url} shows the gateway token"
    assert "ciphertext" not in html, f"{page.url} shows a sealed secret"
    assert "key_hash" not in html, f"{page.url} shows a key hash"


def sign_in(page: Page, key: str, path="/ui/resources"):
    page.goto(BASE + path)
    expect(page).to_have_url(BASE + "/ui/?next=" + urllib.parse.quote(path, safe=""))
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(BASE + path)


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
        page = context.new_page()
        # Script errors, and anything the Content-Security-Policy refused.
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text or "Refused" in m.text else None)

        # Signed out, every page leads to the sign-in form first; a wrong key stays there.
        page.goto(BASE + "/ui/events")
        expect(page).to_have_url(BASE + "/ui/?next=%2Fui%2Fevents")
        expect(page.locator("input[name=key]")).to_be_visible()
        page.fill("input[name=key]", "flk_not-a-key")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("does not sign in")
        sign_in(page, args["admin"])
        assert not any(c["name"] == "key" or args["admin"] in c["value"] for c in context.cookies()), "the key is not a cookie"
        # Web storage holds no key, token or page (htmx keeps only the current path there).
        stored = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
        assert args["admin"] not in stored and "csrf" not in stored and "<" not in stored, stored
        assert page.evaluate("() => localStorage.length") == 0, stored
        assert args["admin"] not in page.url

        # Every resource made through the five surfaces' APIs is listed, newest first.
        for stream_type, stream_id in args["resources"].items():
            expect(page.locator(f'tr[data-type="{stream_type}"]', has_text=stream_id)).to_have_count(1)
        no_secret(page)
        # Filtering by type (htmx swaps the list in place and keeps the URL addressable).
        page.select_option("#type", "profile")
        expect(page).to_have_url(BASE + "/ui/resources?type=profile&q=")
        expect(page.locator("tbody tr")).to_have_count(1)
        page.select_option("#type", "")
        expect(page).to_have_url(BASE + "/ui/resources?type=&q=")
        page.fill("#q", "Researcher")
        # The list is swapped when its answer arrives; the URL follows that answer.
        expect(page).to_have_url(BASE + "/ui/resources?type=&q=Researcher")
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.locator("tbody tr")).to_have_attribute("data-type", "container_agent")

        # The profile's timeline: one row per version, each with its key's name.
        page.goto(BASE + f"/ui/resources/profile/{PROFILE}")
        rows = page.locator("table.timeline tbody tr")
        expect(rows).to_have_count(len(args["versions"]))
        for row, expected in zip(rows.all(), reversed(args["versions"])):
            expect(row.locator("td").first).to_contain_text(str(expected["version"]))
            expect(row.locator(".actor")).to_have_text(expected["actor"])
            expect(row.locator("td[data-label=Request]")).not_to_have_text("—")
        no_secret(page)
        # A click on a row shows the state at that version, at an address of its own.
        page.locator("table.timeline tbody tr", has_text="rev 2").locator("td[data-label=Change]").click()
        expect(page).to_have_url(BASE + f"/ui/resources/profile/{PROFILE}?version=2")
        expect(page.locator("#state-title")).to_have_text("State at version 2")
        expect(page.locator("table.timeline tr.selected td").first).to_contain_text("2")
        expect(page.locator("#state pre.json").first).to_contain_text('"curl"')
        # The keyboard gets there too: the version links are ordinary links.
        page.locator("table.timeline a", has_text="3").first.focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(BASE + f"/ui/resources/profile/{PROFILE}?version=3")
        expect(page.locator("#state-title")).to_have_text("State at version 3")
        if SHOTS:
            page.screenshot(path=os.path.join(SHOTS, "console-timeline.png"), full_page=True)

        # Compare two versions: the changed paths are written out and highlighted.
        page.check("input[name=from][value='1']")
        page.check("input[name=to][value='4']")
        page.click("text=Compare version A with B")
        expect(page).to_have_url(re.compile(re.escape(BASE + f"/ui/resources/profile/{PROFILE}/diff?") + ".+"))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
        assert query == {"from": ["1"], "to": ["4"]}, page.url
        expect(page.locator("#changes-title")).to_contain_text("Version 1 → version 4")
        expect(page.locator("ul.changes code.path", has_text="/config/packages")).not_to_have_count(0)
        marked = page.locator("pre.json.after .ln.marked")
        expect(marked.first).to_be_visible()
        assert any("/config/packages" in (t or "") for t in marked.evaluate_all("ls => ls.map(l => l.title)")), "highlighted lines name their paths"
        no_secret(page)

        # Restore version 2: it asks for a reason, confirms, and the API sees a new version.
        before = revisions(args["admin"])
        page.goto(BASE + f"/ui/resources/profile/{PROFILE}?version=2")
        page.click("text=Restore this version")
        expect(page.locator("#restore-title")).to_have_text("Restore version 2?")
        page.fill("#reason", "bad rollout")
        page.click("button:has-text('Restore version 2')")
        expect(page.locator(".notice")).to_contain_text("Version 2 was restored")
        after = revisions(args["admin"])
        assert len(after) == len(before) + 1, (before, after)
        status, restored = api("GET", f"/api/v1/ledger/resources/profile/{PROFILE}?version={len(after)}", args["admin"])
        _, second = api("GET", f"/api/v1/ledger/resources/profile/{PROFILE}?version=2", args["admin"])
        assert status == 200 and restored["state"]["config"] == second["state"]["config"], restored
        status, events = api("GET", f"/api/v1/ledger/streams/profile/{PROFILE}", args["admin"])
        last = events["events"][-1]
        assert last["data"].get("reason") == "bad rollout" and last["data"].get("restored_from_version") == 2, last
        assert last["metadata"]["actor"]["key_id"], last

        # The live feed: a write through the API appears within 2 s, without a reload.
        page.goto(BASE + "/ui/events")
        expect(page.locator("#feed-state")).to_have_text("live")
        expect(page.locator("#relay")).to_contain_text("NATS connected" if args["nats"] else "NATS not configured")
        no_secret(page)
        started = time.monotonic()
        status, body = api("PUT", f"/api/v1/profiles/{PROFILE}", args["member"], {"config": {"packages": ["live-feed"]}})
        assert status == 200, body
        version = len(after) + 1
        expect(page.locator("#feed tbody tr").first).to_contain_text(f"v{version}", timeout=2000)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, elapsed
        expect(page.locator("#feed tbody tr").first.locator(".actor")).to_have_text(args["member_name"])
        # Paused, nothing arrives; resumed, what was missed arrives.
        page.click("#pause")
        expect(page.locator("#feed-state")).to_have_text("paused")
        api("PUT", f"/api/v1/profiles/{PROFILE}", args["member"], {"config": {"packages": ["while-paused"]}})
        page.wait_for_timeout(1000)
        expect(page.locator("#feed tbody tr").first).to_contain_text(f"v{version}")
        page.click("#pause")
        expect(page.locator("#feed tbody tr").first).to_contain_text(f"v{version + 1}", timeout=2000)
        # Filtered by stream type, other types stay out.
        page.select_option("#type", "instance")
        expect(page).to_have_url(BASE + "/ui/events?type=instance")
        expect(page.locator("#feed-state")).to_have_text("live")
        api("PUT", f"/api/v1/profiles/{PROFILE}", args["member"], {"config": {"packages": ["filtered-out"]}})
        page.wait_for_timeout(1000)
        assert page.locator("#feed tbody tr", has_text="profile/").count() == 0, "a profile event passed the instance filter"
        page.select_option("#type", "")
        expect(page.locator("#feed-state")).to_have_text("live")
        api("PUT", f"/api/v1/profiles/{PROFILE}", args["member"], {"config": {"packages": ["for-the-picture"]}})
        expect(page.locator("#feed tbody tr").first).to_contain_text("profile/", timeout=2000)
        if SHOTS:
            page.screenshot(path=os.path.join(SHOTS, "console-feed.png"))

        # Verification of the org.
        page.goto(BASE + "/ui/verify")
        expect(page.locator(".notice.ok")).to_contain_text("streams are intact")
        no_secret(page)
        # The gateway's own pages.
        page.goto(BASE + f"/ui/resources/gateway/{args['gateway']}")
        page.click("#state details > summary")
        expect(page.locator("#state details pre.json").first).to_contain_text('"token": "***"')
        no_secret(page)
        page.goto(BASE + f"/ui/resources/gateway/{args['gateway']}?version=1")
        page.click("#state details > summary")
        no_secret(page)

        # 360 px wide and dark: one column, nothing wider than the screen.
        small = browser.new_context(viewport={"width": 360, "height": 780}, color_scheme="dark", storage_state=context.storage_state())
        phone = small.new_page()
        for path in ["/ui/resources", f"/ui/resources/profile/{PROFILE}?version=2", f"/ui/resources/profile/{PROFILE}/diff?from=1&to=4", "/ui/events", "/ui/verify"]:
            phone.goto(BASE + path)
            width = phone.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 360, f"{path} is {width} px wide at 360 px"
        background = phone.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)", f"dark scheme background is {background}"
        light = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert light == "rgb(246, 248, 250)", f"light scheme background is {light}"
        # The first Tab stop skips to the content.
        phone.keyboard.press("Tab")
        assert phone.evaluate("() => document.activeElement.textContent") == "Skip to content"
        small.close()

        # Signing out ends the session: the old cookie opens nothing.
        cookies = context.cookies()
        page.click("text=Sign out")
        expect(page).to_have_url(BASE + "/ui/")
        page.goto(BASE + "/ui/resources")
        expect(page).to_have_url(BASE + "/ui/?next=%2Fui%2Fresources")
        replay = browser.new_context()
        replay.add_cookies(cookies)
        stale = replay.new_page()
        stale.goto(BASE + "/ui/resources")
        expect(stale).to_have_url(BASE + "/ui/?next=%2Fui%2Fresources")
        replay.close()

        # A viewer: no restore control anywhere, and a restore POST with its session is 403.
        viewing = browser.new_context()
        viewer = viewing.new_page()
        sign_in(viewer, args["viewer"], f"/ui/resources/profile/{PROFILE}?version=2")
        expect(viewer.locator("#state-title")).to_have_text("State at version 2")
        expect(viewer.locator("text=Restore this version")).to_have_count(0)
        expect(viewer.locator("form[action$='/restore']")).to_have_count(0)
        csrf = viewer.locator("input[name=csrf]").first.get_attribute("value")
        count = len(revisions(args["admin"]))
        answer = viewer.request.post(
            BASE + f"/ui/resources/profile/{PROFILE}/restore",
            form={"csrf": csrf, "version": "2", "reason": "viewer tries", "expected": str(count)},
        )
        assert answer.status == 403, answer.status
        assert len(revisions(args["admin"])) == count, "a viewer's restore recorded nothing"
        answer = viewer.request.get(BASE + f"/ui/resources/profile/{PROFILE}/restore?version=2")
        assert answer.status == 403, answer.status
        no_secret(viewer)
        viewing.close()

        assert not problems, f"the browser reported errors: {problems}"
        browser.close()
    print("ok")


main()
