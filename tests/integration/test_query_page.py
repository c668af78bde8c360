"""The live page in a real headless browser (Debian's Chromium, driven by Selenium): it loads
without console errors, shows every worker and task of a 3-worker app, the last dead letter,
and a key lookup shows the key's committed value."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.integration.harness import app_topics, wait_for
from tests.integration.test_queries import (
    PARTITIONS,
    SETTLE_S,
    _inputs,
    _nodes,
    _ready,
    _stop_all,
)
from tests.kafka_helpers import produce_records, read_committed
from tests.totals_reference import check_running_totals

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# Where the README's picture of the page is written when asked for (EOKAFKA_PAGE_SHOT=path).
SHOT = os.environ.get("EOKAFKA_PAGE_SHOT")


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("the page test needs Debian's chromium and chromium-driver (.ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1500"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_shows_workers_tasks_dead_letters_and_a_key(
    kafka_bootstrap: str, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    names = app_topics(kafka_bootstrap, "query-page", PARTITIONS)
    inputs = _inputs(120, seed=7)
    poison = (b"k3", json.dumps({"id": 9999, "amount": 1, "poison": True}).encode())
    produce_records(kafka_bootstrap, names.src, [*inputs, poison])
    env = {**names.env, "EOKAFKA_ON_ERROR": "dead-letter"}
    nodes = _nodes(kafka_bootstrap, tmp_path, env, ["p0", "p1", "p2"])
    try:
        for n in nodes:
            n.proc.start()
        outputs = read_committed(kafka_bootstrap, names.out, len(inputs), timeout=SETTLE_S)
        wait_for(lambda: _ready(nodes), SETTLE_S, "every worker ready")
        final = check_running_totals(inputs, outputs)
        want = final["k3"]  # the poison record's own store write is set aside with it

        browser.get(nodes[1].url + "/")

        def texts(selector: str) -> list[str]:
            """In one script: the page replaces its tables every 2 s."""
            script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)"
            found: list[str] = browser.execute_script(script, selector)
            return found

        def rows(table: str) -> list[str]:
            return texts(f"#{table} tbody tr")

        def all_shown() -> bool:
            tasks = texts("#workers .task.running")
            return len(rows("workers")) == 3 and len(tasks) == PARTITIONS and bool(
                rows("dead-letters")
            )

        wait_for(all_shown, SETTLE_S, "3 workers, their running tasks and the dead letter")
        shown = "\n".join(rows("workers"))
        for n in nodes:
            assert n.name in shown
        assert browser.find_element(By.CSS_SELECTOR, "#topology svg, #topology pre")
        assert "poison order 9999" in "\n".join(rows("dead-letters"))
        assert "totals" in "\n".join(rows("stores"))

        Select(browser.find_element(By.ID, "lookup-store")).select_by_value("totals")
        browser.find_element(By.ID, "lookup-key").send_keys("k3")
        browser.find_element(By.CSS_SELECTOR, "#lookup button").click()
        result = browser.find_element(By.ID, "lookup-result")
        wait_for(lambda: result.text != "", SETTLE_S, "the lookup's answer")
        assert result.text.splitlines()[0] == str(want), result.text
        if SHOT:
            browser.save_screenshot(SHOT)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        _stop_all(nodes)
