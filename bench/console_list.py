"""How fast the console's task list is interactive after sign-in, on a project with
1,000,000 jobs, against the same view on a project with 1,000 jobs (the reference),
both measured in the same run in headless Chromium (Debian's chromium + chromium-driver).

    .venv/bin/python bench/console_list.py [--jobs 1000000] [--reference-jobs 1000] [--rounds 7]

For each database: ``imagejobs seed`` fills the demo project, ``imagejobs serve`` starts
on it (creating the demo account), then each round signs in with the password and times,
in the browser (``performance.now()``), from the click on "Sign in" to the first drawn
page of the list (``performance.mark("imagejobs:tasks-ready")``), and separately a reload
of the list with the session kept. Reports medians and the ratio big/reference.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

DEMO_PROJECT_ID = "a4da8115c9d8464ead3a38309130523f"
IMAGEJOBS = [sys.executable, "-m", "imagejobs"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _seed(directory: Path, jobs: int) -> str:
    url = f"sqlite:///{directory / 'imagejobs.db'}"
    started = time.monotonic()
    subprocess.run(
        [*IMAGEJOBS, "seed", "--database-url", url, "--project-id", DEMO_PROJECT_ID,
         "--jobs", str(jobs), "--random-seed", "7"],
        check=True, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    print(f"seeded {jobs:,} jobs in {time.monotonic() - started:.1f} s", flush=True)
    return url


def _serve(directory: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "IMAGEJOBS_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [*IMAGEJOBS, "serve", "--port", str(port), "--database-url", url,
         "--data-dir", str(directory), "--no-runner"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if (directory / "demo-credentials.json").exists():
                return process, base
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def _browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


_READY = (
    "const ready = performance.getEntriesByName('imagejobs:tasks-ready');"
    "return ready.length ? ready[ready.length - 1].startTime : null;"
)


def _rounds(driver: webdriver.Chrome, base: str, password: str, rounds: int) -> dict[str, Any]:
    wait = WebDriverWait(driver, 30)
    sign_in, reload = [], []
    for _ in range(rounds):
        driver.get(base + "/console#/signin")
        driver.execute_script("sessionStorage.clear()")
        driver.refresh()
        wait.until(lambda d: d.find_elements(By.ID, "account"))
        for field, value in (("account", "demo"), ("user", "demo"), ("password", password)):
            driver.find_element(By.ID, field).clear()
            driver.find_element(By.ID, field).send_keys(value)
        clicked = driver.execute_script(
            "const t = performance.now();"
            "document.querySelector('#password-form button[type=submit]').click(); return t;"
        )
        ready = wait.until(lambda d: d.execute_script(_READY))
        sign_in.append(ready - clicked)
        rows = len(driver.find_elements(By.CSS_SELECTOR, "#tasks-table tbody tr"))
        assert rows == 10, rows
        driver.refresh()  # the list alone: a fresh page load with the session kept
        reload.append(wait.until(lambda d: d.execute_script(_READY)))
        total = driver.find_element(By.ID, "total-count").text
    return {
        "sign_in_to_list_ms": statistics.median(sign_in),
        "sign_in_to_list_max_ms": max(sign_in),
        "page_load_to_list_ms": statistics.median(reload),
        "total_count_shown": total,
    }


def measure(jobs: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="console-bench-") as folder:
        directory = Path(folder)
        url = _seed(directory, jobs)
        server, base = _serve(directory, url)
        try:
            password = json.loads((directory / "demo-credentials.json").read_text())["password"]
            driver = _browser()
            try:
                return {"jobs": jobs, **_rounds(driver, base, password, rounds)}
            finally:
                driver.quit()
        finally:
            server.terminate()
            server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--reference-jobs", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    reference = measure(args.reference_jobs, args.rounds)
    big = measure(args.jobs, args.rounds)
    report = {
        "reference": reference,
        "big": big,
        "ratio_sign_in_to_list": big["sign_in_to_list_ms"] / reference["sign_in_to_list_ms"],
        "ratio_page_load_to_list": big["page_load_to_list_ms"] / reference["page_load_to_list_ms"],
        "target_met": big["sign_in_to_list_max_ms"] < 1000,
    }
    print(json.dumps(report, indent=2))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "console_list.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
