"""Opens otel-pipetrace's HTML report in Debian's headless Chromium, driven by Selenium, and
uses it as a person would.

Usage: report_open.py [--quick] REPORT_HTML SCREENSHOT_PNG CLICK_TEXT
Prints one JSON object: the rows of the first screen as the page opens, what the page shows
expanded (title, bars, failures), what a click on the bar of
the first process whose command contains CLICK_TEXT shows, what following the deepest link of
the failure chain selects, what collapsing the first subtree, zooming and finding CLICK_TEXT do,
how long the page took to be ready, and the browser's console errors. The screenshot shows the clicked process.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

QUICK = "--quick" in sys.argv
report, screenshot, click_text = [a for a in sys.argv[1:] if a != "--quick"][:3]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1000",
            "--disable-dev-shm-usage"):
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def bars():
    """The bars in the page now: process index, pid, classes, command (the row's tooltip)."""
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#rows .bar')).map(b => ({
            proc: +b.dataset.proc,
            pid: +b.closest('.row').dataset.pid,
            classes: b.className.split(' '),
            command: b.closest('.row').title.split('\\n')[0],
        }));""")


def every_bar():
    """The bars of all rows: only the rows in view are in the page, so scroll through them."""
    seen = {}
    height = driver.execute_script("return document.getElementById('scroller').clientHeight")
    total = driver.execute_script("return document.getElementById('sheet').offsetHeight")
    top = 0
    while True:
        driver.execute_script("document.getElementById('scroller').scrollTop = arguments[0]", top)
        time.sleep(0.03)
        for b in bars():
            seen.setdefault(b["proc"], b)
        if top >= total:
            break
        top += height
    driver.execute_script("document.getElementById('scroller').scrollTop = 0")
    return sorted(seen.values(), key=lambda b: b["proc"])


def first_and_last():
    """The bars of the first screen and of the last (scrolled to the bottom)."""
    first = bars()
    driver.execute_script("var s = document.getElementById('scroller'); s.scrollTop = s.scrollHeight")
    time.sleep(0.2)
    last = bars()
    driver.execute_script("document.getElementById('scroller').scrollTop = 0")
    time.sleep(0.1)
    return sorted({b["proc"]: b for b in first + last}.values(), key=lambda b: b["proc"])


def retry(action):
    """Rows are redrawn on scroll: an element found a moment ago may have been replaced."""
    for _ in range(20):
        try:
            return action()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return action()


def details():
    return driver.find_element(By.ID, "details").text


try:
    driver.get("file://" + report)
    deadline = time.time() + 60
    while driver.execute_script("return document.body.dataset.ready") != "1":
        if time.time() > deadline:
            raise SystemExit("the report did not get ready")
        time.sleep(0.05)
    # What a person sees first: the rows of the first screen, as the page opens (collapsed to
    # the steps); then everything is expanded for the rest.
    opened = driver.execute_script("""
        return Array.from(document.querySelectorAll('#rows .row')).map(r => ({
            command: r.title.split('\\n')[0],
            label: r.querySelector('.label').textContent,
            top: r.getBoundingClientRect().top,
        }));""")
    viewport = driver.execute_script("return window.innerHeight")
    first_screen = [r for r in sorted(opened, key=lambda r: r["top"]) if r["top"] < viewport]
    driver.find_element(By.ID, "expand-all").click()
    time.sleep(0.1)
    out = {
        "opened": first_screen,
        "title": driver.title,
        "ready_ms": float(driver.execute_script("return document.body.dataset.readyMs")),
        "processes": int(driver.find_element(By.ID, "timeline").get_attribute("data-processes")),
        # Scrolling through every row of a large run takes long: --quick looks at the ends.
        "bars": first_and_last() if QUICK else every_bar(),
        "bars_in_page": len(driver.find_elements(By.CSS_SELECTOR, "#rows .bar")),
        "failure_chain": [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#failure a")],
        "failures": [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#failures li")],
        "critical": [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#critical li")],
        "charts": [c.text for c in driver.find_elements(By.CSS_SELECTOR, "#charts .corner")],
    }

    chain = driver.find_elements(By.CSS_SELECTOR, "#failure a[data-proc]")
    if chain:
        chain[-1].click()
        time.sleep(0.2)
        selected = driver.find_elements(By.CSS_SELECTOR, "#rows .row.sel")
        out["chain_link"] = {
            "proc": int(chain[-1].get_attribute("data-proc")),
            "selected": [int(r.get_attribute("data-proc")) for r in selected],
            "details": details(),
        }

    driver.find_element(By.ID, "zoom-fit").click()
    driver.execute_script("document.getElementById('scroller').scrollTop = 0")
    time.sleep(0.3)
    if driver.find_elements(By.CSS_SELECTOR, "#rows .tog.has"):
        retry(lambda: driver.find_element(By.CSS_SELECTOR, "#rows .tog.has").click())
        time.sleep(0.1)
        out["bars_collapsed"] = len(driver.find_elements(By.CSS_SELECTOR, "#rows .bar"))
        out["collapsed_label"] = retry(lambda: driver.find_element(By.CSS_SELECTOR, "#rows .row .label").text)
        driver.find_element(By.ID, "expand-all").click()
        time.sleep(0.1)
        out["bars_expanded"] = len(driver.find_elements(By.CSS_SELECTOR, "#rows .bar"))

    # The first row's bar: the root's, as long as the run.
    plot = "return document.querySelector('#rows .bar').getBoundingClientRect().width"
    width = driver.execute_script(plot)
    driver.find_element(By.ID, "zoom-in").click()
    driver.find_element(By.ID, "zoom-in").click()
    time.sleep(0.1)
    out["zoom"] = {
        "root_bar_before": width,
        "root_bar_after": driver.execute_script(plot),
        "label": driver.find_element(By.ID, "zoom-level").text,
    }
    driver.find_element(By.ID, "zoom-fit").click()
    driver.execute_script("document.getElementById('scroller').scrollTop = 0")
    time.sleep(0.2)

    # Find: typing CLICK_TEXT and Enter selects the first process whose command has it.
    box = driver.find_element(By.ID, "find")
    box.send_keys(click_text + "\n")
    time.sleep(0.2)
    out["find"] = {
        "count": driver.find_element(By.ID, "find-count").text,
        "selected": retry(lambda: [r.get_attribute("title").split("\n")[0]
                                   for r in driver.find_elements(By.CSS_SELECTOR, "#rows .row.sel")]),
    }
    box.clear()
    driver.find_element(By.ID, "zoom-fit").click()
    driver.execute_script("document.getElementById('scroller').scrollTop = 0")
    time.sleep(0.2)

    proc = next((b["proc"] for b in retry(bars) if click_text in b["command"]), None)
    if proc is not None:
        bar = '#rows .bar[data-proc="%d"]' % proc
        retry(lambda: driver.find_element(By.CSS_SELECTOR, bar).click())
        time.sleep(0.2)
        out["clicked"] = {
            "proc": proc,
            "details": details(),
            "argv": [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#details ol li")],
        }
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.2)
    driver.save_screenshot(screenshot)
    out["console_errors"] = [e["message"] for e in driver.get_log("browser")
                             if e["level"] in ("SEVERE", "WARNING")]
    print(json.dumps(out))
finally:
    driver.quit()
