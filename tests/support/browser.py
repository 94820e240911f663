"""A real browser for interop tests: headless Chromium from Debian's packages (``chromium``,
``chromium-driver``) driven by Selenium through the system chromedriver, nothing downloaded
(a driver path given, Selenium Manager offline). And ``sanstack dashboard`` as a process.

Every wait is a ``WebDriverWait`` with a bound; no implicit waits (Selenium's advice: never
mix the two)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from tests.support.processes import require_tool, sanstack_command, wait_for_line

T = TypeVar("T")
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver): missing ones fail the test in CI and skip it elsewhere."""
    chromium = require_tool("chromium")
    require_tool("chromedriver")
    if not Path(CHROMEDRIVER).exists():
        pytest.fail(f"{CHROMEDRIVER} is missing: Debian's chromium-driver puts it there")
    return chromium, CHROMEDRIVER


@contextmanager
def headless_chromium(profile: Path, size: tuple[int, int] = (1400, 1800)) -> Iterator[WebDriver]:
    chromium, driver_path = browser_paths()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # as root Chromium refuses to start without it
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, check: Callable[[WebDriver], T], within: float, what: str) -> T:
    """``check(driver)`` until it is truthy (a re-render meanwhile just means look again)."""

    def attempt(d: WebDriver) -> T | bool:
        try:
            return check(d)
        except StaleElementReferenceException:
            return False

    try:
        return WebDriverWait(driver, within, poll_frequency=0.1).until(attempt)  # type: ignore[return-value]
    except TimeoutException:
        page = str(driver.execute_script("return document.body.innerText;"))[:4000]
        pytest.fail(f"not within {within}s: {what}; the page shows:\n{page}")


def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


class DashboardProcess:
    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, url: str) -> None:
        self.process = process
        self.log_path = log_path
        self.url = url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_dashboard(
    directory: Path, config: Path, extra: Sequence[str] = (), ready_timeout: float = 30.0
) -> Iterator[DashboardProcess]:
    """``sanstack dashboard --config FILE --listen 127.0.0.1:0 EXTRA``; its URL from the line
    it prints; SIGTERM at the end, exit 0 within 10 s and no traceback required."""
    log_path = directory / "dashboard.log"
    args = [
        *sanstack_command(),
        "dashboard",
        "--config",
        str(config),
        "--listen",
        "127.0.0.1:0",
        *extra,
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, cwd=directory)
    try:
        line = wait_for_line(
            process, b"\n", ready_timeout, context=lambda: log_path.read_text()[-3000:]
        )
        found = re.search(rb"dashboard (http://\S+)", line)
        assert found, line
        yield DashboardProcess(process, log_path, found.group(1).decode())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                pytest.fail(f"the dashboard did not stop within 10 s:\n{log_path.read_text()}")
        if process.stdout is not None:
            process.stdout.close()
    text = log_path.read_text(errors="replace")
    assert process.returncode == 0, f"dashboard exited {process.returncode}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-5000:]
