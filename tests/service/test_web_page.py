"""The page at / in headless Chromium, against the real API (over HTTP), a real Celery worker and Redis:
train from the form and watch the progress bar, the loss curve, resume, grids across checkpoints and
across variants, the API's 422s beside the form's fields, the API key (and the event stream under it),
and narrow windows. Any JavaScript error or unexpected failed request in the console fails a test.
Screenshots go to test-artifacts/web/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ddpm.checkpoint_schedule import keep_schedule
from jobs.settings import Settings
from service.app import create_app
from tests.service.browser import (
    LAPTOP,
    PHONE,
    browser_session,
    console_errors,
    live_server,
    screenshot,
    skip_module_unless_chromium,
    wait_until,
)
from tests.stack import TINY_TRAIN

skip_module_unless_chromium()
pytestmark = pytest.mark.usefixtures("worker")

TRAIN_STEPS = 30  # long enough (a few seconds) for the bar to be seen between 0 and 100%
RESUMED_STEPS = TRAIN_STEPS + 4
# max_steps cuts these runs short of their 100 epochs (225 steps each), so each keeps about eight
# checkpoints spaced over its steps (ddpm/checkpoint_schedule.py): 4, 8, ..., 28, 30; the resumed one adds 34.
KEPT_STEPS = [*keep_schedule(TRAIN_STEPS, 225, 10, cut_by_max_steps=True).kept_steps(), RESUMED_STEPS]
TINY_FORM = {"arch": "pure_unet", **{name: str(value) for name, value in TINY_TRAIN.items()}}
GRID = {"n": "4", "nrow": "4", "sampler": "ddim", "steps": "3"}  # a 4x1 grid of 16x16 digits, 3 DDIM steps
JOB_TIMEOUT_S = 90.0

# Records every value any progress bar takes, so a test can tell it moved through intermediate values.
RECORD_PROGRESS = """
window.progressSeen = [];
new MutationObserver((records) => {
  for (const record of records) window.progressSeen.push(Number(record.target.getAttribute("aria-valuenow")));
}).observe(document.body, {subtree: true, attributes: true, attributeFilter: ["aria-valuenow"]});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_session(LAPTOP)


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with live_server(create_app(settings)) as url:
        yield url


def by_css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_page(driver: Any, url: str, view: str) -> None:
    """A fresh load of the page on `view`, with no API key remembered and the console emptied."""
    driver.get("about:blank")  # else a URL differing only in its #hash would not load the page again
    driver.get(f"{url}/#{view}")
    driver.execute_script("localStorage.clear()")
    driver.refresh()
    driver.get_log("browser")


def go(driver: Any, view: str) -> None:
    driver.execute_script("location.hash = arguments[0]", view)


def fill(form: Any, values: dict[str, str]) -> None:
    from selenium.webdriver.support.select import Select

    for name, value in values.items():
        control = form.find_element("css selector", f'[name="{name}"]')
        if control.tag_name == "select":
            Select(control).select_by_value(value)
        else:
            control.clear()
            control.send_keys(value)


def wait_for_form(driver: Any, selector: str) -> Any:
    return wait_until(
        lambda: by_css(driver, f"{selector} [name=arch]") and by_css(driver, selector), 15, selector
    )


def bar_done(bar: Any) -> bool:
    return bar.get_attribute("aria-valuenow") == "100" and bar.get_attribute("data-state") == "succeeded"


def wait_for_ready_cards(driver: Any, selector: str, count: int, what: str) -> None:
    """Wait until exactly `count` grid cards match and every one has its image loaded."""
    wait_until(
        lambda: [c.get_attribute("data-state") for c in all_css(driver, selector)] == ["ready"] * count,
        JOB_TIMEOUT_S,
        what,
    )


def ready_image(driver: Any, selector: str) -> Any:
    image = by_css(driver, selector)
    loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
    return image if image.get_attribute("data-state") == "ready" and loaded else None


def assert_clean_console(driver: Any, expected_statuses: tuple[int, ...] = ()) -> None:
    assert console_errors(driver, expected_statuses) == []


@pytest.mark.usefixtures("local_checkpoint")  # rdn's checkpoint, the second variant compared
def test_train_from_the_form_then_loss_resume_epochs_and_compare(
    browser: Any, base_url: str, session_tag: str
) -> None:
    run_id = f"web-{session_tag}"
    open_page(browser, base_url, "train")
    form = wait_for_form(browser, "#train-form")
    browser.execute_script(RECORD_PROGRESS)
    fill(form, {**TINY_FORM, "max_steps": str(TRAIN_STEPS), "run_id": run_id})
    form.submit()

    # The form's own bar follows the job's event stream to 100%, through values in between.
    accepted = wait_until(lambda: by_css(browser, "#train-result .accepted"), 10, "the 202 answer")
    assert accepted.get_attribute("data-run-id") == run_id
    job_id = accepted.get_attribute("data-job-id")
    bar = by_css(browser, "#train-result .progress")
    wait_until(lambda: bar_done(bar), JOB_TIMEOUT_S, "the training bar reaching 100%")
    assert f"step {TRAIN_STEPS}/{TRAIN_STEPS}" in bar.text and "loss" in bar.text
    seen = browser.execute_script("return window.progressSeen")
    assert any(0 < value < 100 for value in seen), seen
    assert seen == sorted(seen) and seen[-1] == 100

    go(browser, "jobs")
    row = f'tr[data-job-id="{job_id}"]'
    wait_until(lambda: bar_done(by_css(browser, f"{row} .progress")), 10, "the job's row at 100%")
    assert by_css(browser, f"{row} .state").text == "succeeded"
    screenshot(browser, "jobs")

    # The run: configuration, its checkpoints, the loss curve (raw + smoothed, drawn by the API).
    go(browser, f"runs/{run_id}")
    wait_until(lambda: ready_image(browser, "#run-detail img.api-image"), 20, "the loss curve")
    assert "pure_unet" in by_css(browser, "#run-detail dl.config").text
    screenshot(browser, "run")

    # Resume it for a few more steps: one more checkpoint, then the grids of all from the same noise.
    resume = by_css(browser, "#run-detail form.resume")
    fill(resume, {"max_steps": str(RESUMED_STEPS)})
    resume.submit()
    checkpoints = "#run-detail .table-wrap tbody tr"
    wait_until(
        lambda: len(all_css(browser, checkpoints)) == len(KEPT_STEPS),
        JOB_TIMEOUT_S,
        "the resumed run's checkpoint",
    )
    by_css(browser, '#run-detail a[href^="#epochs/"]').click()
    sampling = by_css(browser, "#epochs-form")
    fill(sampling, GRID)
    sampling.submit()
    cards = "#epoch-grids .grid-card"
    wait_for_ready_cards(browser, cards, len(KEPT_STEPS), "every checkpoint's grid")
    titles = [card.find_element("css selector", "figcaption strong").text for card in all_css(browser, cards)]
    assert [title.rsplit("step ", 1)[-1] for title in titles] == [str(step) for step in KEPT_STEPS]
    screenshot(browser, "epochs")

    # Compare two variants side by side: this run's first checkpoint, and rdn's newest.
    go(browser, "compare")
    for arch in ("pure_unet", "rdn"):
        wait_until(
            lambda a=arch: by_css(browser, f'[data-arch="{a}"] input[type=checkbox]'), 10, arch
        ).click()
    pinned = f"{run_id}@{TRAIN_STEPS}"
    wait_until(
        lambda: by_css(browser, f'[data-arch="pure_unet"] option[value="{pinned}"]'), 10, "the checkpoints"
    )
    compare = by_css(browser, "#compare-form")
    fill(compare, {"checkpoint-pure_unet": pinned, **GRID})
    compare.submit()
    cards = "#compare-grids .grid-card"
    wait_for_ready_cards(browser, cards, 2, "both variants' grids")
    captions = [card.find_element("css selector", "figcaption").text for card in all_css(browser, cards)]
    assert captions[0].startswith("DDPM_PureUNet") and f"{run_id} · step {TRAIN_STEPS}" in captions[0]
    assert captions[1].startswith("DDPM_RDN") and " · step " in captions[1]  # its newest checkpoint
    widths = [
        browser.execute_script("return arguments[0].naturalWidth", img)
        for img in all_css(browser, f"{cards} img")
    ]
    assert widths == [4 * 16 + 5 * 2] * 2  # 4 images of 16 px across, 2 px padding (make_grid)
    screenshot(browser, "compare")
    assert_clean_console(browser)


def test_jobs_show_errors_and_cancel_a_running_job(browser: Any, base_url: str, client: TestClient) -> None:
    # One worker, first in first out: the CIFAR-10 run fails at once (no download here), then the long
    # one runs until the page cancels it.
    failing = client.post("/train", json={"arch": "pure_unet", "max_steps": 1, "width": 0.125}).json()
    long = client.post("/train", json={"arch": "pure_unet", "max_steps": 5000, **TINY_TRAIN}).json()
    open_page(browser, base_url, "jobs")
    failed_row = f'tr[data-job-id="{failing["job_id"]}"]'
    wait_until(
        lambda: "CIFAR-10" in by_css(browser, f"{failed_row} .details").text, JOB_TIMEOUT_S, "the error"
    )
    assert by_css(browser, f"{failed_row} .state").text == "failed"
    assert not by_css(browser, f"{failed_row} button").is_displayed()  # nothing left to cancel

    row = f'tr[data-job-id="{long["job_id"]}"]'
    wait_until(
        lambda: "step" in by_css(browser, f"{row} .progress").text, JOB_TIMEOUT_S, "the long run's steps"
    )
    assert "worker" in by_css(browser, "#service-summary").text  # from GET /metrics ("1 worker")
    screenshot(browser, "jobs-running")
    by_css(browser, f"{row} button").click()
    wait_until(lambda: by_css(browser, f"{row} .state").text == "cancelled", 30, "the cancelled state")
    assert not by_css(browser, f"{row} button").is_displayed()
    screenshot(browser, "jobs-cancelled")
    assert_clean_console(browser)


# Counts the page's API requests in flight (event streams aside: they never end) and DOM changes, so a
# test can wait until a view has fetched and drawn its data instead of for a guessed time.
TRACK_ACTIVITY = """
window.apiInFlight = 0;
window.domChanges = 0;
const realFetch = window.fetch;
window.fetch = async (resource, options = {}) => {
  const accept = (options.headers && (options.headers.Accept || options.headers.accept)) || "";
  if (accept.includes("event-stream")) return realFetch(resource, options);
  window.apiInFlight += 1;
  try {
    const response = await realFetch(resource, options);
    await response.clone().arrayBuffer();  // the body has arrived, not only the headers
    return response;
  } finally {
    window.apiInFlight -= 1;
  }
};
new MutationObserver((records) => { window.domChanges += records.length; })
  .observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
"""


def wait_until_settled(driver: Any, view: str, quiet_polls: int = 3) -> None:
    """Until the view has no API request in flight, no image still loading, and its DOM has stopped
    changing for `quiet_polls` polls in a row (its data fetched and drawn)."""
    state = {"changes": -1, "quiet": 0}

    def settled() -> bool:
        busy, changes, loading = driver.execute_script(
            "return [window.apiInFlight, window.domChanges,"
            " document.querySelectorAll(arguments[0] + ' [data-state=loading]').length]",
            f"#view-{view}",
        )
        state["quiet"] = (
            state["quiet"] + 1 if (busy, loading) == (0, 0) and changes == state["changes"] else 0
        )
        state["changes"] = changes
        return state["quiet"] >= quiet_polls

    wait_until(settled, 20, f"the {view} view's data")


def test_narrow_window_keeps_every_view_within_the_screen(browser: Any, base_url: str) -> None:
    open_page(browser, base_url, "compare")
    browser.execute_script(TRACK_ACTIVITY)
    browser.set_window_size(*PHONE)
    try:
        for view in ("compare", "epochs", "jobs", "runs", "fid", "train"):
            go(browser, view)
            wait_until(lambda v=view: by_css(browser, f"#view-{v}").is_displayed(), 5, f"the {view} view")
            wait_until_settled(browser, view)
            if view == "fid":  # the report's Table 1 beside the (maybe empty) results; the FID-vs-N plot
                wait_until(lambda: ready_image(browser, "#view-fid img.api-image"), 20, "the FID plot")
                assert "DDPM_BigGAN" in by_css(browser, "#view-fid").text
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{view}: the page is {overflow} px wider than a {PHONE[0]} px window"
            screenshot(browser, f"narrow-{view}")
    finally:
        browser.set_window_size(*LAPTOP)
    assert_clean_console(browser)


def test_the_form_shows_the_apis_422_beside_each_field(browser: Any, base_url: str) -> None:
    open_page(browser, base_url, "train")
    form = wait_for_form(browser, "#train-form")
    # The page's own bounds come from the OpenAPI schema ...
    assert by_css(browser, "#train-form [name=epochs]").get_attribute("min") == "1"
    fill(form, {**TINY_FORM, "epochs": "0", "width": "9"})
    form.submit()

    def field_error(name: str) -> str:
        return by_css(browser, f'#train-form .field-error[data-for="{name}"]').text

    # ... but what is valid is the API's call: its messages, beside the fields they name.
    wait_until(lambda: field_error("epochs"), 10, "the epochs error")
    assert "greater than or equal to 1" in field_error("epochs")
    assert "less than or equal to 4" in field_error("width")
    assert by_css(browser, "#train-form [name=epochs]").get_attribute("aria-invalid") == "true"
    assert field_error("lr") == ""
    screenshot(browser, "train-422")

    # A check across fields belongs to no one field: it is shown for the whole form.
    fill(form, {"epochs": "1", "width": "0.125", "dataset": "cifar10"})
    form.submit()
    wait_until(lambda: "32x32" in by_css(browser, "#train-form .message.error").text, 10, "the form's error")
    assert field_error("epochs") == "" and field_error("width") == ""
    assert all_css(browser, "#train-result .accepted") == []
    assert_clean_console(browser, expected_statuses=(422,))


def test_api_key_entered_on_the_page_reaches_every_request_and_the_event_stream(
    browser: Any, settings: Settings, session_tag: str
) -> None:
    keyed = settings.model_copy(update={"api_key": SecretStr("page-key")})
    with live_server(create_app(keyed)) as url:
        open_page(browser, url, "jobs")
        banner = wait_until(
            lambda: by_css(browser, "#auth-banner").is_displayed() and by_css(browser, "#auth-banner"),
            10,
            "the 401 banner",
        )
        assert "401" in banner.text and "needs an API key" in banner.text
        screenshot(browser, "api-key-401")

        key = by_css(browser, "#api-key")
        key.send_keys("wrong")
        by_css(browser, "#key-form").submit()
        wait_until(
            lambda: "key saved here is wrong" in by_css(browser, "#auth-banner").text,
            10,
            "the wrong-key note",
        )
        key.clear()
        key.send_keys("page-key")
        by_css(browser, "#key-form").submit()
        wait_until(lambda: not by_css(browser, "#auth-banner").is_displayed(), 10, "the banner going away")
        assert browser.execute_script("return localStorage.getItem('ddpm.apiKey')") == "page-key"

        # Training progress arrives through the event stream, which needs the key as well.
        go(browser, "train")
        form = wait_for_form(browser, "#train-form")
        fill(form, {**TINY_FORM, "max_steps": "2", "run_id": f"web-key-{session_tag}"})
        form.submit()
        bar = wait_until(lambda: by_css(browser, "#train-result .progress"), 10, "the 202 answer")
        wait_until(lambda: bar_done(bar), JOB_TIMEOUT_S, "the training bar reaching 100%")
        streams = browser.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter((e) => e.name.endsWith('/events')).map((e) => e.responseStatus)"
        )
        assert 200 in streams, streams
        browser.execute_script("localStorage.clear()")
        assert_clean_console(browser, expected_statuses=(401,))


def test_the_fid_tab_shows_every_metric_and_its_warnings(
    browser: Any, base_url: str, settings: Settings
) -> None:
    from ddpm.fid.results import save_result

    interval = {
        "low": 185.0,
        "high": 193.3,
        "se": 2.1,
        "level": 0.95,
        "replicates": 50,
        "bootstrap_mean": 189.9,
    }
    save_result(
        settings.data_dir,
        {
            "arch": "biggan",
            "run_id": "web-fid-metrics",
            "step": 3,
            "sampler": "dpmpp_2m",
            "steps": 20,
            "dataset": "digits",
            "warnings": ["N=256 < 2048: the sample covariance is rank-deficient (a test note)"],
            "unavailable": {"inception_score": "needs pytorch-fid's original weights (a test note)"},
            "scores": [
                {
                    "n": 256,
                    "fid": 189.15,
                    "fid_interval": interval,
                    "fid_inf": {
                        "value": 175.8,
                        "se": 1.2,
                        "slope": 3400.0,
                        "points": [[26, 300.0], [256, 189.15]],
                    },
                    "kid": {"mean": 0.2444, "std": 0.0072, "subsets": 100, "subset_size": 128},
                    "precision_recall": {"precision": 0.12, "recall": 0.34, "k": 3},
                }
            ],
        },
    )
    open_page(browser, base_url, "fid")
    wait_until(lambda: "web-fid-metrics" in by_css(browser, "#view-fid").text, 20, "the stored result's row")
    text = by_css(browser, "#view-fid").text
    for shown in ("189.15 (185.00–193.30)", "175.80 ± 1.20", "244.40 ± 7.20", "0.12 / 0.34"):
        assert shown in text, shown
    # The warnings are on the page, not in a tooltip.
    assert "rank-deficient (a test note)" in text and "no inception_score: needs" in text
    wait_until(lambda: ready_image(browser, "#view-fid img.api-image"), 30, "the FID plot with KID beside it")
    screenshot(browser, "fid-metrics")
    assert_clean_console(browser)
