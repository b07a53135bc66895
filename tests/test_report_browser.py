"""Render the report in headless Chromium (Debian `chromium` + `chromium-driver`, selenium).

Checks: every image loaded with a non-zero natural size, the headline numbers on the page equal
summary.json, the browser console has no errors, and the first screen (the budget, the verdict, the
recommended change, its two alternatives and the headroom table) lies within 1400×900. Nothing downloads a driver: the Debian chromedriver
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
         "--disable-dev-shm-usage", "--window-size=1400,900"]


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


#: What must be seen without scrolling (issue 23): the budget, the verdict, the change to make and
#: its two alternatives, today's headroom.
ABOVE_THE_FOLD = ("verdict", "budget", "collisions-per-hour", "recommendation", "alternative-0",
                  "alternative-1", "headroom-table")


@pytest.fixture(scope="module")
def quiet_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser-quiet") / "out"
    res = CliRunner().invoke(collide.cli.cli, ["report", "--scenario", "quiet", "--horizon", "600",
                                               "--seed", "5", "--max-resets", "1/week",
                                               "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize("which", ["report", "quiet_report"])
def test_first_screen_is_above_the_fold(which, request, tmp_path):
    out = request.getfixturevalue(which)
    driver = _driver(tmp_path)
    try:
        driver.set_window_size(1400, 900)
        driver.get((out / "index.html").as_uri())
        w, h = driver.execute_script("return [window.innerWidth, window.innerHeight];")
        assert w <= 1400 and h <= 900
        for ident in ABOVE_THE_FOLD:
            r = driver.execute_script(
                "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
                "return [r.left, r.top, r.right, r.bottom, r.width, r.height];", ident)
            left, top, right, bottom, width, height = r
            assert width > 0 and height > 0, ident
            assert left >= 0 and top >= 0, (ident, r)
            assert right <= w and bottom <= h, (ident, r, (w, h))
        driver.save_screenshot(str(tmp_path / f"{which}-first-screen.png"))
    finally:
        driver.quit()
