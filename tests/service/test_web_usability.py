"""The page's reading aids in headless Chromium, at 1400 and 390 px, against the real API (over HTTP), a
real Celery worker and Redis: wide tables scroll sideways with a cue, a job's ETA is never cut, a grid
opens at full size (pixelated, keyboard and Escape), the Train form offers the variants and data sets as
choices and shows an unknown variant's 422 as one line, counts agree with their nouns, the FID tab says
what its numbers mean, and the header names the worker's device. Screenshots: test-artifacts/web/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.settings import Settings
from models import arch_names
from service.app import create_app
from tests.conftest import make_image_folder
from tests.service.browser import (
    browser_session,
    live_server,
    screenshot,
    skip_module_unless_chromium,
    wait_until,
)
from tests.service.test_web_page import (
    GRID,
    TINY_FORM,
    TRACK_ACTIVITY,
    all_css,
    assert_clean_console,
    bar_done,
    by_css,
    fill,
    go,
    open_page,
    wait_for_form,
    wait_for_ready_cards,
    wait_until_settled,
)
from tests.stack import TINY_TRAIN, finished, wait_for

skip_module_unless_chromium()
pytestmark = pytest.mark.usefixtures("worker")

WIDE, PHONE = (1400, 900), (390, 844)
JOB_TIMEOUT_S = 90.0
GRID_PX = (4 * 16 + 5 * 2, 16 + 2 * 2)  # GRID: 4 images of 16 px in a row, 2 px padding (make_grid)

# What one scroll box shows: its cue, whether its last column is in sight, and the page's own overflow.
SCROLL_STATE = """
const wrap = arguments[0];
const box = wrap.querySelector('.scroll-box');
const frame = wrap.querySelector('.scroll-frame');
const last = wrap.querySelector('thead th:last-child').getBoundingClientRect();
const hint = wrap.querySelector('.scroll-hint');
return {
  overflow: wrap.dataset.overflow,
  hint: hint.offsetParent === null ? null : hint.textContent,
  rightShade: getComputedStyle(frame, '::after').opacity,
  leftShade: getComputedStyle(frame, '::before').opacity,
  lastColumnInSight: last.right <= box.getBoundingClientRect().right + 1,
  pageOverflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  focusable: box.tabIndex === 0,
};
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_session(WIDE)


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with live_server(create_app(settings)) as url:
        yield url


def store_fid_row(settings: Settings) -> None:
    """One stored FID evaluation: the results table then has all its thirteen columns."""
    from ddpm.fid.results import save_result

    save_result(
        settings.data_dir,
        {
            "arch": "rdn",
            "run_id": "rdn-local",
            "step": 1,
            "sampler": "ddim",
            "steps": 50,
            "dataset": "digits",
            "scores": [{"n": 64, "fid": 301.5}],
        },
    )


def scroll_state(driver: Any, selector: str) -> dict[str, Any]:
    return driver.execute_script(SCROLL_STATE, by_css(driver, selector))


def cue_shown(driver: Any, selector: str, overflow: str) -> dict[str, Any]:
    """The box's state once its cue says `overflow` and the shade of each edge hiding columns has faded
    in (0.2 s), the others out."""
    shades = {"leftShade": "1" if overflow in ("left", "both") else "0"}
    shades["rightShade"] = "1" if overflow in ("right", "both") else "0"

    def settled() -> dict[str, Any] | None:
        state = scroll_state(driver, selector)
        faded = all(state[edge] == opacity for edge, opacity in shades.items())
        return state if state["overflow"] == overflow and faded else None

    return wait_until(settled, 5, f"the scroll cue saying {overflow}")


@pytest.mark.usefixtures("local_checkpoint")  # a run, so the Runs table has a row
def test_wide_tables_scroll_sideways_with_a_cue_on_a_phone(
    browser: Any, base_url: str, settings: Settings
) -> None:
    store_fid_row(settings)
    open_page(browser, base_url, "fid")
    results = "#view-fid .table-wrap"  # the first: our results, the report's Table 1 is further down
    browser.set_window_size(*PHONE)
    try:
        wait_until(lambda: "rdn-local" in by_css(browser, results).text, 20, "the FID results table")
        state = cue_shown(browser, results, "right")
        # Columns are not cut: they are out of sight to the right, that edge shaded, and a hint says so.
        assert state["hint"] == "scroll →"
        assert not state["lastColumnInSight"] and state["focusable"]
        assert state["pageOverflow"] <= 0  # the table scrolls, not the page
        screenshot(browser, "table-scroll-phone")

        browser.execute_script(
            "const box = arguments[0]; box.scrollLeft = box.scrollWidth",
            by_css(browser, f"{results} .scroll-box"),
        )
        state = cue_shown(browser, results, "left")
        assert state["hint"] == "← scroll"  # the left edge shaded now, the right one not
        assert state["lastColumnInSight"]
        screenshot(browser, "table-scrolled-phone")

        # The keyboard scrolls it too: the box takes focus and the arrow keys move it.
        from selenium.webdriver.common.keys import Keys

        by_css(browser, f"{results} .scroll-box").send_keys(Keys.ARROW_LEFT)
        assert cue_shown(browser, results, "both")["hint"] == "← scroll →"  # columns hidden on both sides

        # Every table of the page sits in such a box, on every tab (studies and analysis may have none yet).
        browser.execute_script(TRACK_ACTIVITY)
        for view in ("runs", "jobs", "fid", "studies", "analysis"):
            go(browser, view)
            wait_until_settled(browser, view)
            if view in ("runs", "jobs", "fid"):
                assert all_css(browser, f"#view-{view} table"), view
            loose = browser.execute_script(
                "return [...document.querySelectorAll(arguments[0] + ' table')]"
                ".filter((t) => !t.closest('.table-wrap .scroll-box')).length",
                f"#view-{view}",
            )
            assert loose == 0, f"{view}: a table outside a scroll box"
        go(browser, "runs")
        runs = "#view-runs .table-wrap"
        wait_until(lambda: "rdn-local" in by_css(browser, runs).text, 10, "the runs table")
        cue_shown(browser, runs, "right")
        screenshot(browser, "runs-scroll-phone")
    finally:
        browser.set_window_size(*WIDE)
    # A wide window shows the runs table whole: no cue, no hint, nothing to tab to.
    state = cue_shown(browser, runs, "none")
    assert state["hint"] is None and state["lastColumnInSight"] and not state["focusable"]
    screenshot(browser, "runs-wide")

    # The FID tab says what its numbers mean, in place of a pointer to the README.
    go(browser, "fid")
    footnote = wait_until(lambda: by_css(browser, "#fid-footnote").text, 20, "the FID footnote")
    for said in (
        "Lower is better",
        "N is the number of generated images",
        "not comparable",
        "seed",
        "95% interval",
    ):
        assert said in footnote, said
    assert "README" not in by_css(browser, "#view-fid").text
    screenshot(browser, "fid-footnote")
    assert_clean_console(browser)


def test_the_header_names_the_workers_device_and_counts_agree(browser: Any, base_url: str) -> None:
    open_page(browser, base_url, "epochs")
    # The session runs one worker, started with --device cpu (/readyz lists its resolved device).
    wait_until(lambda: by_css(browser, "#readiness").text == "worker: cpu", 10, "the header's worker: cpu")
    # rdn-local has one kept checkpoint: "1 checkpoint", not "1 checkpoints".
    option = wait_until(lambda: by_css(browser, '#epochs-form option[value="rdn-local"]'), 10, "the runs")
    assert option.text.endswith("(rdn, 1 checkpoint)"), option.text
    go(browser, "jobs")
    summary = wait_until(lambda: by_css(browser, "#service-summary").text, 10, "the service summary")
    assert "1 worker" in summary and "1 workers" not in summary
    assert_clean_console(browser)


def test_the_train_form_offers_variants_and_data_sets_and_an_unknown_one_is_one_line(
    browser: Any, base_url: str, settings: Settings, session_tag: str
) -> None:
    from selenium.webdriver.support.select import Select

    make_image_folder(settings.data_dir / "datasets" / "page-folder", count=3, size=12)
    open_page(browser, base_url, "train")
    form = wait_for_form(browser, "#train-form")
    arch = Select(by_css(browser, "#train-form select[name=arch]"))
    dataset = Select(by_css(browser, "#train-form select[name=dataset]"))
    assert [option.get_attribute("value") for option in arch.options] == ["", *arch_names()]
    assert "DDPM_PureUNet" in by_css(browser, '#train-form option[value="pure_unet"]').text
    offered = {option.get_attribute("value"): option.text for option in dataset.options}
    assert {"cifar10", "digits", "folder:page-folder"} <= set(offered)
    assert offered["folder:page-folder"] == "folder:page-folder · 3 images"
    assert "not downloaded" in offered["cifar10"]  # this volume has no CIFAR-10
    assert by_css(browser, "#train-form select[name=preset]")  # the recipes are still offered

    for width, name in ((WIDE, "wide"), (PHONE, "phone")):
        browser.set_window_size(*width)
        arch.select_by_value("pure_unet")
        dataset.select_by_value("digits")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the form is {overflow} px wider than the {name} window"
        screenshot(browser, f"train-variant-{name}")

        # A variant the API does not know (the select offers none: a stale page, a hand-edited one) is
        # answered with one line beside the field, not a list of every name.
        browser.execute_script(
            "const select = arguments[0]; select.append(new Option('x', 'x')); select.value = 'x'",
            by_css(browser, "#train-form select[name=arch]"),
        )
        form.submit()
        error = wait_until(
            lambda: by_css(browser, '#train-form .field-error[data-for="arch"]').text, 10, "the arch error"
        )
        assert error == (
            f"unknown variant 'x'; valid: {', '.join(arch_names())} (GET /archs; '+' combines presets)"
        )
        # Beside the field it is one sentence (a few lines on a phone), not the twenty-odd lines of one
        # entry per name that pydantic's error made.
        lines = browser.execute_script(
            "const range = document.createRange(); range.selectNodeContents(arguments[0]);"
            "return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size",
            by_css(browser, '#train-form .field-error[data-for="arch"]'),
        )
        assert lines <= (3 if name == "wide" else 6), lines
        assert all_css(browser, "#train-form .message.error") == []  # nothing besides it
        screenshot(browser, f"train-unknown-variant-{name}")
        browser.execute_script("document.querySelector('#train-form option[value=x]').remove()")
    browser.set_window_size(*WIDE)

    # Picked from the lists, the run is accepted and trains.
    run_id = f"web-pick-{session_tag}"
    arch.select_by_value("pure_unet")
    dataset.select_by_value("folder:page-folder")
    fill(
        form,
        {
            **{k: v for k, v in TINY_FORM.items() if k not in ("arch", "dataset")},
            "max_steps": "2",
            "run_id": run_id,
        },
    )
    form.submit()
    accepted = wait_until(lambda: by_css(browser, "#train-result .accepted"), 10, "the 202 answer")
    assert accepted.get_attribute("data-run-id") == run_id
    wait_until(lambda: bar_done(by_css(browser, "#train-result .progress")), JOB_TIMEOUT_S, "the run")
    assert_clean_console(browser, expected_statuses=(422,))


@pytest.mark.usefixtures("local_checkpoint")
def test_a_grid_opens_at_full_size_pixelated_by_mouse_and_keyboard(browser: Any, base_url: str) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(browser, base_url, "compare")
    wait_until(lambda: by_css(browser, '[data-arch="rdn"] input[type=checkbox]'), 10, "rdn").click()
    compare = by_css(browser, "#compare-form")
    fill(compare, GRID)
    compare.submit()
    wait_for_ready_cards(browser, "#compare-grids .grid-card", 1, "rdn's grid")
    opener = by_css(browser, "#compare-grids button.enlarge")

    def shown() -> dict[str, Any] | None:
        return browser.execute_script(
            "const d = document.getElementById('lightbox');"
            "if (!d || !d.open) return null;"
            "const c = d.querySelector('canvas');"
            "return {width: c.width, height: c.height, shownWidth: c.getBoundingClientRect().width,"
            " rendering: getComputedStyle(c).imageRendering, caption: d.textContent,"
            " fits: c.getBoundingClientRect().right <= innerWidth}"
        )

    for width, name in ((WIDE, "wide"), (PHONE, "phone")):
        browser.set_window_size(*width)
        opener.click()
        view = wait_until(shown, 5, f"the full-size grid at {name} width")
        scale = view["shownWidth"] / GRID_PX[0]
        # At its own pixels, scaled by a whole factor that fits the window, crisp (pixelated).
        assert (view["width"], view["height"]) == GRID_PX and view["rendering"] == "pixelated"
        assert scale == int(scale) and scale >= (10 if name == "wide" else 4) and view["fits"], view
        assert f"{GRID_PX[0]}×{GRID_PX[1]} px, shown ×{int(scale)}" in view["caption"]
        screenshot(browser, f"grid-full-size-{name}")
        # Escape closes it, and the focus is back on the grid; Enter opens it again, a click closes it.
        browser.switch_to.active_element.send_keys(Keys.ESCAPE)
        wait_until(lambda: shown() is None, 5, "Escape closing it")
        assert browser.switch_to.active_element == opener
        opener.send_keys(Keys.ENTER)
        wait_until(shown, 5, "Enter opening it")
        by_css(browser, "#lightbox canvas").click()
        wait_until(lambda: shown() is None, 5, "a click closing it")
    browser.set_window_size(*WIDE)
    assert_clean_console(browser)


def test_a_running_jobs_eta_is_never_cut(browser: Any, base_url: str, client: TestClient) -> None:
    long = client.post("/train", json={"arch": "pure_unet", "max_steps": 5000, **TINY_TRAIN}).json()
    row = f'tr[data-job-id="{long["job_id"]}"]'
    try:
        open_page(browser, base_url, "jobs")
        for width, name in ((PHONE, "phone"), (WIDE, "wide")):
            browser.set_window_size(*width)
            text = wait_until(
                lambda: (
                    "ETA" in by_css(browser, f"{row} .progress .text").text
                    and by_css(browser, f"{row} .progress .text")
                ),
                JOB_TIMEOUT_S,
                f"the job's ETA at {name} width",
            )
            cut = browser.execute_script(
                "const t = arguments[0], bar = t.closest('.progress').getBoundingClientRect(),"
                " r = t.getBoundingClientRect();"
                "return {wider: t.scrollWidth - t.clientWidth, below: r.bottom - bar.bottom,"
                " beyondWindow: r.right - innerWidth, text: t.textContent}",
                text,
            )
            assert cut["wider"] <= 0 and cut["below"] <= 0.5, cut  # all of it inside the bar
            assert cut["beyondWindow"] <= 0, cut  # and in sight without scrolling the table
            assert cut["text"].rstrip().split("ETA")[1].strip().split("\u00a0")[-1] in ("s", "min", "h"), cut
            # The other columns scroll into sight on a phone; on a laptop the table fits whole.
            cue_shown(browser, "#view-jobs .table-wrap", "right" if name == "phone" else "none")
            screenshot(browser, f"jobs-eta-{name}")
    finally:
        browser.set_window_size(*WIDE)
        client.delete(f"/jobs/{long['job_id']}")
        wait_for(client, long["job_id"], finished, timeout=60)
    assert_clean_console(browser)
