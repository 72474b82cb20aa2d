"""The example task board in Chromium: every change, from anywhere, reaches open pages.

Each test waits with Playwright's ``expect`` (retrying up to PUSH_TIMEOUT),
never with sleeps; "converged" means a list shows exactly what a fresh GET of
its URL answers, in order, with the same count.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil

import pytest

from .conftest import ROOT, artifact

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture fails or skips, naming what is missing
    expect = None

pytestmark = [pytest.mark.e2e]


def open_board(page, query: str = ""):
    """Go to the board and wait until its socket is open and its lists arrived."""
    page.goto(f"/{query}")
    expect(page.locator("body")).to_have_attribute("data-connection", "open")
    for count in ("#todo-count", "#done-count"):
        expect(page.locator(count)).not_to_be_empty()
    if page.locator("body[data-user]").count():
        expect(page.locator("#mine-count")).not_to_be_empty()
    return page


def task(page, list_id: str, pk: int):
    """The entry of task ``pk`` in the list ``list_id`` (``todo``, ``done``, ``mine``)."""
    return page.locator(f"#{list_id} li[data-id='{pk}']")


def expect_converged(page, list_id: str, path: str) -> None:
    """The page's list equals a fresh GET of ``path`` (made with the page's cookies)."""
    response = page.request.get(path)
    assert response.ok, response.text()
    tasks = response.json()
    expect(page.locator(f"#{list_id} li .ref")).to_have_text([f"#{t['id']}" for t in tasks])
    expect(page.locator(f"#{list_id} li .title")).to_have_text([t["title"] for t in tasks])
    expect(page.locator(f"#{list_id}-count")).to_have_text(str(len(tasks)))


def unique(title: str) -> str:
    return f"{title} ({secrets.token_hex(2)})"


def create(app, title: str, owner: int | None = None, done: bool = False) -> int:
    response = app.api.post("/api/tasks/", json={"title": title, "owner": owner, "done": done})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_change_in_one_page_appears_in_the_other(app, new_page):
    writer, reader = open_board(new_page()), open_board(new_page())
    title = unique("Water the plants")

    writer.fill("#add-task input[name=title]", title)
    writer.click("#add-task button")
    added = reader.locator("#todo li", has_text=title)
    expect(added).to_have_count(1)
    pk = int(added.get_attribute("data-id"))

    task(writer, "todo", pk).locator("input[type=checkbox]").click()
    expect(task(reader, "done", pk)).to_have_class(re.compile(r"\bdone\b"))
    expect(task(reader, "todo", pk)).to_have_count(0)

    task(writer, "done", pk).locator("button.delete").click()
    expect(task(reader, "done", pk)).to_have_count(0)
    for page in (writer, reader):
        expect_converged(page, "todo", "/api/tasks/?done=false")
        expect_converged(page, "done", "/api/tasks/?done=true")


def test_api_changes_appear(app, new_page):
    page = open_board(new_page())

    pk = create(app, unique("Renew the certificate"))
    expect(task(page, "todo", pk)).to_have_count(1)

    renamed = unique("Renew the TLS certificate")
    assert app.api.patch(f"/api/tasks/{pk}/", json={"title": renamed}).status_code == 200
    expect(task(page, "todo", pk).locator(".title")).to_have_text(renamed)

    assert app.api.patch(f"/api/tasks/{pk}/", json={"done": True}).status_code == 200
    expect(task(page, "done", pk)).to_have_count(1)
    expect(task(page, "todo", pk)).to_have_count(0)

    assert app.api.delete(f"/api/tasks/{pk}/").status_code == 204
    expect(task(page, "done", pk)).to_have_count(0)
    expect_converged(page, "done", "/api/tasks/?done=true")


def test_admin_changes_appear(app, new_page):
    admin, board = new_page("admin"), open_board(new_page())
    title = unique("Order more coffee")

    admin.goto("/admin/tasks/task/add/")
    admin.fill("#id_title", title)
    admin.select_option("#id_owner", label="bob")
    admin.click("input[name=_save]")
    added = board.locator("#todo li", has_text=title)
    expect(added).to_have_count(1)
    expect(added.locator(".owner")).to_have_text("bob")
    pk = int(added.get_attribute("data-id"))

    admin.goto(f"/admin/tasks/task/{pk}/change/")
    admin.check("#id_done")
    admin.click("input[name=_save]")
    expect(task(board, "done", pk)).to_have_count(1)
    expect(task(board, "todo", pk)).to_have_count(0)


def test_filtered_page_drops_a_task_that_leaves_its_filter(app, new_page):
    alice, bob = app.users["alice"], app.users["bob"]
    page = open_board(new_page(), f"?owner={alice}")
    expect(page.locator("#owner-filter")).to_have_value(str(alice))
    expect_converged(page, "todo", f"/api/tasks/?done=false&owner={alice}")

    pk = create(app, unique("Book the meeting room"), owner=alice)
    expect(task(page, "todo", pk)).to_have_count(1)

    assert app.api.patch(f"/api/tasks/{pk}/", json={"owner": bob}).status_code == 200
    expect(task(page, "todo", pk)).to_have_count(0)
    expect(task(page, "done", pk)).to_have_count(0)
    expect_converged(page, "todo", f"/api/tasks/?done=false&owner={alice}")

    # The filter is part of the observed URL: changing it subscribes anew.
    page.select_option("#owner-filter", str(bob))
    expect(page).to_have_url(re.compile(rf"/\?owner={bob}$"))
    expect(task(page, "todo", pk)).to_have_count(1)
    expect_converged(page, "todo", f"/api/tasks/?done=false&owner={bob}")
    expect_converged(page, "done", f"/api/tasks/?done=true&owner={bob}")


def test_private_lists_are_per_user(app, new_page):
    alice_page, bob_page = open_board(new_page("alice")), open_board(new_page("bob"))
    expect(alice_page.locator("#user")).to_have_text("alice")
    alice, bob = app.users["alice"], app.users["bob"]

    for_alice = create(app, unique("Prepare the demo"), owner=alice)
    for_bob = create(app, unique("Review the pull request"), owner=bob)
    expect(task(alice_page, "mine", for_alice)).to_have_count(1)
    expect(task(bob_page, "mine", for_bob)).to_have_count(1)
    expect(task(alice_page, "mine", for_bob)).to_have_count(0)
    expect(task(bob_page, "mine", for_alice)).to_have_count(0)

    # Handing a task over moves it from one private list to the other.
    assert app.api.patch(f"/api/tasks/{for_alice}/", json={"owner": bob}).status_code == 200
    expect(task(alice_page, "mine", for_alice)).to_have_count(0)
    expect(task(bob_page, "mine", for_alice)).to_have_count(1)
    expect_converged(alice_page, "mine", "/api/tasks/mine/")
    expect_converged(bob_page, "mine", "/api/tasks/mine/")

    anonymous = open_board(new_page())
    expect(anonymous.locator("#mine")).to_have_count(0)
    expect(anonymous.locator("section.mine .hint")).to_contain_text("Log in")


def test_polling_widget_follows_the_server(app, new_page):
    page = open_board(new_page())
    expect(page.locator("#connection")).to_have_text("live")
    clock = page.locator("#server-status [data-name='server time'] dd")
    expect(clock).to_have_text(re.compile(r"^\d\d:\d\d:\d\d UTC$"))
    # Nothing in the database changes: only celery beat's polling can move the clock.
    expect(clock).not_to_have_text(clock.inner_text())
    expect(page.locator("#server-status [data-name='open sockets'] dd")).to_have_text(
        re.compile(r"^[1-9]\d*$")
    )


def test_make_changes_reaches_every_page(app, new_page):
    bob = app.users["bob"]
    everyone, filtered = open_board(new_page()), open_board(new_page("alice"), f"?owner={bob}")

    app.manage("make_changes", "--rate", "20", "--duration", "1.5", "--seed", "5")

    expect_converged(everyone, "todo", "/api/tasks/?done=false")
    expect_converged(everyone, "done", "/api/tasks/?done=true")
    expect_converged(filtered, "todo", f"/api/tasks/?done=false&owner={bob}")
    expect_converged(filtered, "done", f"/api/tasks/?done=true&owner={bob}")
    expect_converged(filtered, "mine", "/api/tasks/mine/")


def test_page_reconnects_and_converges_after_the_server_restarts(app, new_page):
    page = open_board(new_page())
    body = page.locator("body")

    app.kill_web()
    expect(body).to_have_attribute("data-connection", "reconnecting")
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    # Changes while no server is up: the worker evaluates them, nobody receives them.
    app.manage("make_changes", "--rate", "20", "--duration", "1", "--seed", "11")
    app.start("web")

    # The client retries with backoff (at most 10 s apart), then resumes its subscriptions.
    expect(body).to_have_attribute("data-connection", "open", timeout=30_000)
    expect_converged(page, "todo", "/api/tasks/?done=false")
    expect_converged(page, "done", "/api/tasks/?done=true")

    pk = create(app, unique("Check the backups"))
    expect(task(page, "todo", pk)).to_have_count(1)


def test_screenshot_of_the_live_board(app, new_page):
    """Leaves tests/artifacts/board.png; REACTIVE_UPDATE_SCREENSHOT=1 also copies it to docs/."""
    page = open_board(new_page("alice", viewport={"width": 1100, "height": 640}))
    app.manage("make_changes", "--rate", "10", "--duration", "1", "--seed", "3")
    expect_converged(page, "todo", "/api/tasks/?done=false")
    expect_converged(page, "mine", "/api/tasks/mine/")
    page.add_style_tag(content="*, *::before { caret-color: transparent !important; }")
    path = artifact("board.png")
    page.screenshot(path=path)
    assert path.stat().st_size > 10_000
    if os.environ.get("REACTIVE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, ROOT / "docs" / "screenshot.png")


def test_page_fits_a_phone_and_explains_itself(app, new_page):
    # A user of their own: nobody else's test gives them tasks, so their list starts empty.
    name = f"carol{secrets.token_hex(3)}"
    script = (
        "import json; from django.contrib.auth.models import User; "
        f"u = User.objects.create_user({name!r}, password='demo', is_staff=True); print(u.pk)"
    )
    pk = int(app.manage("shell", "-c", script).splitlines()[-1])
    page = open_board(new_page(name, viewport={"width": 360, "height": 740}))

    # No sideways scroll on a 360 px phone, and the header stays inside the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.locator("header").bounding_box()["width"] <= 360
    for selector in ("header nav", "#connection", ".toolbar", "#server-status"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, (selector, box)

    # An empty list says so, and stops saying so when a task arrives.
    empty = page.locator("#mine-empty")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("You own no tasks")
    created = create(app, unique("Carol's first task"), owner=pk)
    expect(task(page, "mine", created)).to_have_count(1)
    expect(empty).to_be_hidden()

    # A refused write reads as a sentence, not as the API's JSON.
    page.fill("#add-task input[name=title]", "   ")
    page.click("#add-task button")
    problem = page.locator("#problem")
    expect(problem).to_have_text("Adding the task failed: title: This field may not be blank.")
    assert "{" not in problem.inner_text()
