"""The Analysis tab in headless Chromium, against the real API (over HTTP), a real Celery worker and Redis:
analyse held-out real digits and a briefly trained model's samples from the form, see each as a bar
chart beside the data set's distribution with its numbers and per-class grid, compare the two, a 422
beside its field, at 1400 and 390 px wide. Screenshots go to test-artifacts/web/analysis-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.settings import Settings
from service.app import create_app
from tests.service.analysis_study import CLASSIFIER, RUN, RUN_STEPS, make_study
from tests.service.browser import (
    browser_session,
    live_server,
    screenshot,
    skip_module_unless_chromium,
    wait_until,
)
from tests.service.test_web_page import all_css, assert_clean_console, by_css, fill, open_page

skip_module_unless_chromium()
pytestmark = pytest.mark.usefixtures("worker")

WIDE, NARROW = (1400, 900), (390, 844)
JOB_TIMEOUT_S = 120.0
SCALE = 4  # 8 px images are shown at 32 px (analysischart.js CELL_PX)
GRID_WIDTH = 8 * (8 + 2) + 2  # 8 images per class of 8 px, 2 px padding


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_session(WIDE)


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with live_server(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def study(settings: Settings) -> dict[str, Any]:
    with TestClient(create_app(settings)) as client:
        return make_study(client, settings.data_dir)


def shown(driver: Any, kind: str) -> Any:
    """The result area once it shows a finished analysis of `kind` (real, samples) or a comparison."""
    result = by_css(driver, "#analysis-result")
    selector = "article.comparison" if kind == "comparison" else f'article.analysis[data-kind="{kind}"]'
    return result.get_attribute("data-state") == "ready" and by_css(driver, f"#analysis-result {selector}")


def grids_loaded(driver: Any, count: int) -> bool:
    images = all_css(driver, "#analysis-result img.class-grid-image")
    return len(images) == count and all(
        image.get_attribute("data-state") == "ready"
        and driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        for image in images
    )


def whole_page_screenshot(driver: Any, name: str) -> None:
    """The whole page, not only the window: the window is made as tall as the page for the picture."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    page = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, max(height, page + 150))  # the window's frame takes some height
    try:
        screenshot(driver, name)
    finally:
        driver.set_window_size(width, height)


def no_overflow(driver: Any) -> int:
    return driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def analyse_from_the_form(driver: Any, values: dict[str, str], kind: str) -> str:
    form = by_css(driver, "#analysis-form")
    fill(form, values)
    form.submit()
    wait_until(lambda: shown(driver, kind), JOB_TIMEOUT_S, f"the {kind} analysis")
    wait_until(lambda: grids_loaded(driver, 1), 20, "its grid")
    return by_css(driver, "#analysis-result").get_attribute("data-shows")


def test_the_analysis_tab_shows_an_analysis_and_a_comparison(
    browser: Any, base_url: str, study: dict[str, Any]
) -> None:
    open_page(browser, base_url, "analysis")
    checkpoint = f"{RUN}@{RUN_STEPS}"
    wait_until(
        lambda: (
            by_css(browser, f'#analysis-form option[value="{checkpoint}"]')
            and by_css(browser, f'#analysis-form option[value="{CLASSIFIER}"]')
        ),
        15,
        "the checkpoints and classifiers",
    )

    # The API's 422 appears beside the field it names; nothing is queued.
    form = by_css(browser, "#analysis-form")
    fill(form, {"source": "real", "classifier": CLASSIFIER, "n": "5"})
    form.submit()
    n_error = '#analysis-form .field-error[data-for="n"]'
    wait_until(lambda: by_css(browser, n_error).text, 10, "the n error")
    assert "greater than or equal to 10" in by_css(browser, n_error).text

    # Held-out real digits: the histogram beside the data set's, within sampling noise.
    real_id = analyse_from_the_form(browser, {"n": "100"}, "real")
    assert by_css(browser, n_error).text == ""
    chart = by_css(browser, "#analysis-result svg.share-chart")
    assert chart.get_attribute("data-classes") == "10"
    assert len(all_css(browser, "#analysis-result rect.bar.first")) == 10
    assert len(all_css(browser, "#analysis-result rect.bar.dataset")) == 10
    assert len(all_css(browser, "#analysis-result line.whisker")) == 30  # a whisker and two caps per class
    text = by_css(browser, "#analysis-result").text
    assert "within sampling noise of the data set" in text and "Read the histogram" in text
    assert "Accuracy against the true labels" in text and "Confident share" in text
    image = by_css(browser, "#analysis-result img.class-grid-image")
    assert browser.execute_script("return arguments[0].naturalWidth", image) == GRID_WIDTH
    assert image.size["width"] == GRID_WIDTH * SCALE  # scaled up, pixelated
    assert image.value_of_css_property("image-rendering") == "pixelated"
    labels = [label.text for label in all_css(browser, "#analysis-result .class-grid-labels span")]
    assert labels == [str(digit) for digit in range(10)]
    whole_page_screenshot(browser, "analysis-real")

    # The briefly trained model's samples: measurably different.
    values = {"source": checkpoint, "n": "50", "sampler": "ddim", "steps": "2"}
    samples_id = analyse_from_the_form(browser, values, "samples")
    text = by_css(browser, "#analysis-result").text
    assert "measurably different from the data set" in text and f"step {RUN_STEPS}" in text
    whole_page_screenshot(browser, "analysis-samples")

    # Both listed; pick them and compare.
    for result_id in (real_id, samples_id):
        box = wait_until(
            lambda r=result_id: by_css(browser, f'#analysis-list tr[data-id="{r}"] input[name=pick]'),
            10,
            "the analysis in the list",
        )
        box.click()
    by_css(browser, "#analysis-compare").click()
    wait_until(lambda: shown(browser, "comparison"), 20, "the comparison")
    wait_until(lambda: grids_loaded(browser, 2), 20, "both grids")
    assert len(all_css(browser, "#analysis-result rect.bar")) == 30  # A, B and the data set per class
    text = by_css(browser, "#analysis-result").text
    assert "different (p < 0.01)" in text and "held-out real images" in text and f"step {RUN_STEPS}" in text
    whole_page_screenshot(browser, "analysis-compare")

    # A phone's width: nothing wider than the screen (tables scroll inside their own box).
    browser.set_window_size(*NARROW)
    try:
        wait_until(lambda: no_overflow(browser) <= 0, 5, f"the comparison fitting {NARROW[0]} px")
        whole_page_screenshot(browser, "analysis-compare-narrow")
        browser.execute_script("location.hash = arguments[0]", f"analysis/{samples_id}")
        wait_until(lambda: shown(browser, "samples"), 20, "the samples' analysis")
        wait_until(lambda: grids_loaded(browser, 1), 20, "its grid")
        wait_until(lambda: no_overflow(browser) <= 0, 5, f"the analysis fitting {NARROW[0]} px")
        whole_page_screenshot(browser, "analysis-samples-narrow")
    finally:
        browser.set_window_size(*WIDE)
    assert_clean_console(browser, expected_statuses=(422,))


def test_a_classifier_trained_from_the_page(browser: Any, base_url: str, study: dict[str, Any]) -> None:
    open_page(browser, base_url, "analysis")
    wait_until(
        lambda: by_css(browser, f'#classifier-list tr[data-name="{CLASSIFIER}"]'), 15, "the classifiers"
    )
    by_css(browser, "details.classifiers summary").click()
    form = by_css(browser, "#classifier-form")

    # The data set is picked from GET /datasets' list, not typed.
    def offered_datasets() -> list[str] | None:
        values = [
            o.get_attribute("value") for o in all_css(browser, "#classifier-form [name=dataset] option")
        ]
        return values if len(values) > 1 else None  # one placeholder option until GET /datasets answers

    offered = wait_until(offered_datasets, 10, "the data sets")
    assert {"cifar10", "digits"} <= set(offered)
    assert form.find_element("css selector", "[name=dataset]").get_attribute("value") == "digits"
    fill(form, {"image_size": "4"})  # below the smallest size: the API's 422 lands beside the field
    form.submit()
    size_error = '#classifier-form .field-error[data-for="image_size"]'
    wait_until(lambda: by_css(browser, size_error).text, 10, "the image size error")
    assert "8" in by_css(browser, size_error).text

    name = "page-digits-8px"
    fill(form, {"dataset": "digits", "image_size": "8", "epochs": "1", "name": name})
    form.submit()
    bar = wait_until(lambda: by_css(browser, "#classifier-form .accepted .progress"), 10, "the 202 answer")
    wait_until(
        lambda: bar.get_attribute("data-state") == "succeeded", JOB_TIMEOUT_S, "the classifier's training"
    )
    assert "held-out accuracy" in by_css(browser, "#classifier-form .accepted .status").text
    row = wait_until(lambda: by_css(browser, f'#classifier-list tr[data-name="{name}"]'), 10, "its row")
    assert "digits 8px" in row.text and "succeeded" in row.text
    # It is offered for analyses at once.
    assert by_css(browser, f'#analysis-form option[value="{name}"]')
    whole_page_screenshot(browser, "analysis-classifiers")
    assert_clean_console(browser, expected_statuses=(422,))
