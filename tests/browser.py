"""Headless Debian chromium driven by selenium (the UI's browser tests and screenshots).

Debian's own chromium and chromium-driver (``make browser``), never a downloaded browser: the
driver path is given, so selenium-manager never looks for one on the network.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=en-US",
)  # fmt: skip


@contextmanager
def chrome(width: int = 1400, height: int = 1000):
    """A fresh headless browser (its own --user-data-dir, removed afterwards)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="ui-chrome-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(driver, path: Path, max_height: int = 4000) -> Path:
    """The whole page (up to ``max_height`` px) as a PNG."""
    driver.set_window_size(1400, 400)  # measure the content, not a viewport left tall by the last shot
    height = min(max_height, driver.execute_script("return document.documentElement.scrollHeight"))
    width = driver.execute_script("return document.documentElement.scrollWidth")
    driver.set_window_size(max(width, 1400), height + 140)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def publish(source: Path, target: Path, names: list[str], width: int = 1100, max_height: int = 1400) -> list[Path]:
    """Copies of the test run's screenshots for the README: cut to ``max_height``, scaled to
    ``width`` and reduced to a 256-colour palette (small files; the UI is flat colours)."""
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        image = Image.open(source / f"{name}.png").convert("RGB")
        image = image.crop((0, 0, image.width, min(image.height, int(max_height * image.width / width))))
        image = image.resize((width, int(image.height * width / image.width)), Image.LANCZOS)
        out = target / f"{name}.png"
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        written.append(out)
    return written


if __name__ == "__main__":  # python -m tests.browser NAME...: .run/screenshots -> docs/screenshots
    import sys

    root = Path(__file__).resolve().parents[1]
    for path in publish(root / ".run" / "screenshots", root / "docs" / "screenshots", sys.argv[1:]):
        print(f"{path} {path.stat().st_size // 1024} kB")
