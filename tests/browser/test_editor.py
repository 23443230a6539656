"""The YAML editor in Chromium: live validation marks the line at fault, completion, save as a draft."""

import re

import pytest
from django.core.cache import cache
from playwright.sync_api import Page, expect

from policies.services.imports import environment_import
from policies.validation.cache import clear_memory

pytestmark = pytest.mark.browser


@pytest.fixture
def staging(org, meshsim):
    cache.clear()
    clear_memory()
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    environment_import(environment=org.env)
    yield org.env
    cache.clear()
    clear_memory()


def sign_in(page: Page, base_url: str, next_path: str) -> None:
    page.goto(f"{base_url}{next_path}")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}{next_path}")


def line_of(page: Page, prefix: str) -> int:
    """1-based number of the first editor line starting with `prefix` (after indentation)."""
    lines = page.evaluate("window.meshgateEditor.text()").split("\n")
    return next(n for n, text in enumerate(lines, 1) if text.strip().startswith(prefix))


def put_cursor_after(page: Page, line: int, word: str) -> None:
    page.evaluate(
        """([line, word]) => {
            const view = window.meshgateEditor.view;
            const l = view.state.doc.line(line);
            view.dispatch({selection: {anchor: l.from + l.text.indexOf(word) + word.length}});
            view.focus();
        }""",
        [line, word],
    )


def select_last_letter_of(page: Page, line: int, word: str) -> None:
    """Selects the last letter of `word` on `line`: the next key typed replaces it in one edit, so
    validation never sees (and never reports) a half-typed word in between."""
    page.evaluate(
        """([line, word]) => {
            const view = window.meshgateEditor.view;
            const l = view.state.doc.line(line);
            const end = l.from + l.text.indexOf(word) + word.length;
            view.dispatch({selection: {anchor: end - 1, head: end}});
            view.focus();
        }""",
        [line, word],
    )


def wait_for_diagnostic(page: Page, message: str) -> None:
    """Until the editor holds a diagnostic with `message` (the validation of the current text)."""
    page.wait_for_function(
        "(message) => window.meshgateEditor.diagnostics().some((d) => d.message === message)", arg=message
    )


def test_live_validation_marks_the_line_then_clears_and_saves(live_server, staging, org, page):
    sign_in(page, live_server.url, f"/editor/policy/{org.policy_a.pk}/")
    expect(page.locator("h1")).to_contain_text("Edit reviews")
    status = page.locator("#editor-status")
    expect(status).to_have_text(re.compile(r"Valid|warning"))
    expect(page.locator(".cm-lintRange-error")).to_have_count(0)

    # Type a wrong field name: `hosts:` becomes `hostz:`.
    hosts_line = line_of(page, "hosts:")
    select_last_letter_of(page, hosts_line, "hosts")
    page.keyboard.type("z")
    underline = page.locator(".cm-lintRange-error")
    expect(underline.first).to_be_visible()
    wait_for_diagnostic(page, "unknown field spec.hostz: did you mean hosts?")
    diagnostics = page.evaluate("window.meshgateEditor.diagnostics()")
    at_line = [d for d in diagnostics if d["line"] == hosts_line]
    assert [(d["severity"], d["source"]) for d in at_line] == [("error", "MG0203")], diagnostics
    assert at_line[0]["message"] == "unknown field spec.hostz: did you mean hosts?"
    # (spec.hosts is now missing too: that error is on the `spec:` line above.)
    expect(status).to_have_text(re.compile(r"^\d+ errors?$"))
    markers = page.locator(".cm-gutter-lint .cm-gutterElement").filter(has=page.locator(".cm-lint-marker-error"))
    marker_lines = [int(n) for n in page.locator(".cm-lineNumbers .cm-gutterElement").all_inner_texts() if n.strip()]
    assert markers.count() == len({d["line"] for d in diagnostics if d["severity"] == "error"})
    assert hosts_line in marker_lines
    item = page.locator(f"#findings-list .mg-finding-error[data-line='{hosts_line}']")
    expect(item).to_contain_text(f"Line {hosts_line}")
    expect(item).to_contain_text("unknown field spec.hostz: did you mean hosts?")
    expect(item).to_contain_text("MG0203")
    underline.filter(has_text="hostz").hover()
    tooltip = page.locator(".cm-tooltip-lint")
    expect(tooltip).to_contain_text("unknown field spec.hostz: did you mean hosts?")
    expect(tooltip).to_contain_text("MG0203")
    page.screenshot(path="/tmp/meshgate-editor.png")

    # Fix it: the diagnostic goes away.
    select_last_letter_of(page, hosts_line, "hostz")
    page.keyboard.type("s")
    expect(page.locator(".cm-lintRange-error")).to_have_count(0)
    expect(status).to_have_text(re.compile(r"Valid|warning"))
    expect(page.locator("#findings-list .mg-finding-error")).to_have_count(0)

    # Shift a little more traffic to v2 while here, then save.
    for old, new in (("weight: 90", "80"), ("weight: 10", "20")):
        put_cursor_after(page, line_of(page, old), old)
        page.keyboard.press("Backspace")
        page.keyboard.press("Backspace")
        page.keyboard.type(new)
    expect(status).to_have_text(re.compile(r"Valid|warning"))
    page.get_by_label("Message").fill("Shift 20% to reviews v2")
    page.get_by_role("button", name="Save draft").click()
    expect(page).to_have_url(re.compile(r"/drafts/\d+/$"))
    expect(page.locator("h1")).to_contain_text("reviews")
    draft_text = page.locator("pre.mg-yaml code").last
    expect(draft_text).to_contain_text("weight: 80")
    expect(draft_text).to_contain_text("weight: 20")
    expect(page.locator("body")).to_contain_text("Shift 20% to reviews v2")


def test_completion_offers_schema_fields_and_enum_values(live_server, staging, org, page):
    sign_in(page, live_server.url, "/editor/new/?environment=staging&kind=PeerAuthentication")
    expect(page.locator("#editor-status")).to_have_text(re.compile(r"Valid|warning"))
    mode_line = line_of(page, "mode:")
    # Replace the mode value and ask for completion: the CRD's enum is offered.
    page.evaluate(
        """(line) => {
            const view = window.meshgateEditor.view;
            const l = view.state.doc.line(line);
            view.dispatch({changes: {from: l.from, to: l.to, insert: "    mode: "}, selection: {anchor: l.from + 10}});
            view.focus();
        }""",
        mode_line,
    )
    page.keyboard.press("Control+Space")
    options = page.locator(".cm-tooltip-autocomplete li")
    expect(options.first).to_be_visible()
    expect(options).to_have_text(["DISABLE", "PERMISSIVE", "STRICT", "UNSET"])
    page.keyboard.type("PERM")
    # Typing re-filters the list (the source may answer asynchronously): accept only once the
    # filtered list is on screen, or Enter would insert a newline into a closed tooltip.
    expect(options).to_have_text(["PERMISSIVE"])
    # CodeMirror ignores Enter within its interactionDelay (75 ms) of the list's last update (the
    # key then inserts a newline): let the filtered list stand a moment first
    page.wait_for_timeout(250)
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.meshgateEditor.text().includes('mode: PERMISSIVE')")

    # A new key under spec: the spec's fields, with their descriptions.
    put_cursor_after(page, line_of(page, "spec:"), "spec:")
    page.keyboard.press("Enter")
    page.keyboard.type("sel")
    completion = page.locator(".cm-tooltip-autocomplete")
    expect(completion.locator("li", has_text="selector")).to_be_visible()
    expect(page.locator(".cm-completionInfo")).to_contain_text("workload")
