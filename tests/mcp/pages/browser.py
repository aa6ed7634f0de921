"""A real browser for the page tests: Debian's Chromium, headless, driven by Selenium against the
gateway as deployed (`python -m maestro.web`). Screenshots go to test-output/browser/ (ignored by
git); the README's pictures under docs/pages/ are chosen from them."""

from __future__ import annotations

import base64
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[3]
OUTPUT = ROOT / "test-output" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
)


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="maestro-chromium-")
        self.downloads = Path(tempfile.mkdtemp(prefix="maestro-downloads-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(self.downloads)})
        OUTPUT.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)
        shutil.rmtree(self.downloads, ignore_errors=True)

    # --- driving ----------------------------------------------------------------------------

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def click_text(self, text: str, css: str = "a, button") -> None:
        """Click the link or button that reads exactly `text`, as a keyboard user would: focus, Enter."""
        for element in self.find_all(css):
            if element.text.strip() == text:
                element.click()
                return
        raise AssertionError(f"no link or button reads {text!r}; found {[e.text for e in self.find_all(css)]}")

    def wait(self, condition, timeout: float = 15, message: str = ""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition, message)

    def wait_text(self, css: str, text: str, timeout: float = 15) -> None:
        self.wait(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout, f"{css} never showed {text!r}")

    def body(self) -> str:
        return self.find("body").text

    def sign_in(self, base_url: str, username: str, password: str, path: str = "/mcp/registry") -> None:
        self.open(base_url + path)
        self.wait(EC.url_contains("/login"), message="a signed-out visit must land on the sign-in page")
        self.find("#id_username").send_keys(username)
        self.find("#id_password").send_keys(password)
        self.find("form button[type=submit]").click()
        self.wait(lambda driver: urlsplit(driver.current_url).path == path, message="signing in must lead back to the page asked for")

    def screenshot(self, name: str, *, whole_page: bool = True) -> Path:
        """The whole page (or what the window shows)."""
        path = OUTPUT / f"{name}.png"
        if not whole_page:
            self.driver.save_screenshot(str(path))
            return path
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def console_errors(self) -> list[dict]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def downloaded(self, name: str, timeout: float = 15) -> Path:
        """The downloaded file, once Chromium has finished writing it."""
        path = self.downloads / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and not (self.downloads / f"{name}.crdownload").exists():
                return path
            time.sleep(0.05)
        raise AssertionError(f"{name} was not downloaded; the folder holds {[p.name for p in self.downloads.iterdir()]}")
