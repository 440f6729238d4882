"""Opens a trace file in speedscope (npm) inside Debian's headless Chromium, driven by Selenium.

Usage: speedscope_open.py SPEEDSCOPE_INDEX_HTML TRACE_FILE SCREENSHOT_PNG
Prints one JSON object: the page title, what speedscope shows (the profile names in its
selector) and the browser's console errors. Exit status 0 when the page loaded.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

index, trace, screenshot = sys.argv[1:4]
options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
            "--allow-file-access-from-files", "--disable-dev-shm-usage"):
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get("file://" + index)
    deadline = time.time() + 30
    while not driver.find_elements(By.CSS_SELECTOR, "input[type=file]"):
        if time.time() > deadline:
            raise SystemExit("speedscope did not load")
        time.sleep(0.1)
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(trace)
    # Loaded: the file name replaces the landing page's title; an import failure shows an alert.
    text = ""
    while time.time() < deadline:
        text = driver.find_element(By.TAG_NAME, "body").text
        if "Browse" not in text or "Something went wrong" in text or "Unrecognized" in text:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    text = driver.find_element(By.TAG_NAME, "body").text
    driver.save_screenshot(screenshot)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    print(json.dumps({"title": driver.title, "body": text, "console_errors": errors}))
finally:
    driver.quit()
