"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run``
installs) driven by Selenium, with every host but the loopback unreachable, so a page
that needs the internet shows it. A failing test leaves a screenshot and the page's HTML
in ``test-output/browser/``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    reason = "Debian's chromium and chromium-driver are not installed"
    if os.environ.get("KILN_REQUIRE_BROWSER") == "1":  # CI installs them: missing is a failure
        raise pytest.UsageError(f"KILN_REQUIRE_BROWSER=1 but {reason}")
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        browser = item.funcargs.get("browser")  # type: ignore[attr-defined]
        if browser is not None:
            OUTPUT.mkdir(parents=True, exist_ok=True)
            shot = OUTPUT / f"{item.name}.png"
            browser.save_screenshot(str(shot))
            (OUTPUT / f"{item.name}.html").write_text(browser.page_source)
            report.sections.append(("browser", f"screenshot: {shot}; page: {browser.current_url}"))


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-gpu",
        # No way out but the loopback: a CDN script would fail to load.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
