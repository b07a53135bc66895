"""Render the report in headless Chromium (Debian `chromium` + `chromium-driver`, selenium).

Checks: every image loaded with a non-zero natural size, the headline numbers on the page equal
summary.json, the browser console has no errors. Nothing downloads a driver: the Debian chromedriver
is used through `Service(executable_path=...)`.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

import collide.cli

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), "/usr/bin/chromium") if p and os.path.exists(p)),
                None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-dev-shm-usage", "--window-size=1200,900"]


def _driver(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip(f"chromedriver not found at {CHROMEDRIVER} (apt-get install chromium-driver)")
    if CHROMIUM is None:
        pytest.skip("chromium not found (apt-get install chromium)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    profile = tmp_path / "profile"
    profile.mkdir()
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser-report") / "out"
    res = CliRunner().invoke(collide.cli.cli, ["report", "--scenario", "seed", "--horizon", "120",
                                               "--seed", "11", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_page_renders_in_chromium(report, tmp_path):
    driver = _driver(tmp_path)
    try:
        driver.get((report / "index.html").as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth, "
            "i.naturalHeight, i.getBoundingClientRect().width]);")
        assert len(imgs) >= 7
        for ident, complete, w, h, shown in imgs:
            assert complete and w > 0 and h > 0 and shown > 0, ident
        summary = json.loads((report / "summary.json").read_text())
        for key, item in summary["page"].items():
            el = driver.find_element("id", key)
            # textContent: what the page says, before CSS (the verdict badge is upper-cased)
            assert el.get_attribute("textContent").strip() == item["text"], key
            assert el.text.strip().lower() == item["text"].lower(), key
            assert json.loads(el.get_attribute("data-value")) == item["value"], key
        assert driver.find_element("id", "collisions-per-hour").is_displayed()
        logs = driver.get_log("browser")
        errors = [e for e in logs if e.get("level") in ("SEVERE", "ERROR")]
        assert not errors, errors
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
