"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver: for the
served review's end-to-end test (tests/test_review_serve_browser.py) and its benchmark
(bench/p7_serve.py).

``.ci/run`` installs the packages ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``). The flags are those this machine needs: no sandbox (CI runs as
root), no GPU, and no background connections (the network is closed).

**Reading the screen.** textual-serve's page draws the terminal with xterm.js on a canvas, so
the page's DOM holds no text. xterm.js keeps what it shows in its buffer; the page does not
expose the ``Terminal`` object, so :data:`FIND_TERMINAL` (run before the page's own scripts)
notes it when the page stores it (``this.terminal = new Terminal(...)``). :meth:`Browser.screen`
then reads the rows xterm.js holds for display (``buffer.active``): the text the clinician
sees.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 800)

FIND_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    if (value && value.buffer && typeof value.onData === "function") {
      window.__xtermTerminal = value;
    }
    Object.defineProperty(this, "terminal", {
      value, writable: true, configurable: true, enumerable: true,
    });
  },
});
"""
READ_SCREEN = """
const terminal = window.__xtermTerminal;
if (!terminal) { return null; }
const buffer = terminal.buffer.active;
const rows = [];
for (let y = 0; y < terminal.rows; y++) {
  const line = buffer.getLine(buffer.viewportY + y);
  rows.push(line ? line.translateToString(true) : "");
}
return rows.join("\\n");
"""


def chromium_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is not installed (Debian packages chromium and chromium-driver)"
    return None


class Browser:
    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    def open(self, url: str) -> None:
        self.driver.get(url)

    def screen(self) -> str:
        """The terminal's rows as text ('' before the page has its terminal)."""
        text = self.driver.execute_script(READ_SCREEN)
        return text if isinstance(text, str) else ""

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """The screen once it shows ``text``."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"the page never showed {text!r}; it showed:\n{screen}")

    def page_text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def keyboard(self) -> WebElement:
        """Where xterm.js takes keys (its hidden textarea, focused)."""
        area = self.driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        self.driver.execute_script("arguments[0].focus();", area)
        return area

    def press(self, *keys: str) -> None:
        area = self.keyboard()
        for key in keys:
            area.send_keys(key)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path


@contextmanager
def chromium(profile: Path, downloads: Path | None = None) -> Iterator[Browser]:
    """Headless Chromium with a new profile in ``profile``; files it downloads go to
    ``downloads``."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FIND_TERMINAL})
        if downloads is not None:
            downloads.mkdir(parents=True, exist_ok=True)
            driver.execute_cdp_cmd(
                "Browser.setDownloadBehavior",
                {"behavior": "allow", "downloadPath": str(downloads)},
            )
        yield Browser(driver)
    finally:
        driver.quit()
