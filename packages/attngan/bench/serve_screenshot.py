"""The attngan-serve page in Debian's headless chromium: type a caption, generate, screenshot.

    uv run python packages/attngan/bench/serve_screenshot.py [--netG netG.pt] \
        [--out packages/attngan/bench/figures/serve_page.png]

Without ``--netG`` the generator has random weights in the digits recipe's architecture
(the page and its layout are what is shown, not a trained model's pictures).  Needs
``apt-get install chromium chromium-driver``; the server runs in-process on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import random_generator  # noqa: E402

from attngan.sample import load_generator  # noqa: E402
from attngan.serve import ServerThread, make_app  # noqa: E402

FIGURE = Path(__file__).parent / "figures" / "serve_page.png"


def chrome(width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--hide-scrollbars", f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--netG", default=None)
    parser.add_argument("--caption", default="a large red seven in the upper left")
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(FIGURE))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.netG) if args.netG else random_generator(Path(tmp) / "netG.pt")
        gen = load_generator(path, torch.device("cpu"))
    driver = chrome(1000, 1400)
    try:
        with ServerThread(make_app(gen)) as server:
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: "px" in d.find_element(By.ID, "model").text)
            driver.find_element(By.ID, "caption").send_keys(args.caption)
            count = driver.find_element(By.ID, "count")
            count.clear()
            count.send_keys(str(args.count))
            driver.find_element(By.ID, "seed").send_keys(str(args.seed))
            driver.find_element(By.ID, "generate").click()
            final = (By.CSS_SELECTOR, "img.final")
            wait.until(lambda d: len(d.find_elements(*final)) == args.count)
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1000, min(int(height) + 200, 3000))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
    finally:
        driver.quit()
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
