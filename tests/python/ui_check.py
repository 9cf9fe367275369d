"""Drives cairn's web UI in headless Chromium (Selenium and chromedriver) against a running
master that already holds the app `/web` (2 instances) and the jobs `tick` and `after-tick`.

    ui_check.py <base-url> <screenshot-dir>

With `CAIRN_UI_TOKENS=<read-secret>,<operate-secret>` it checks instead, against a master that
asks for tokens, that the page asks for one, hides the actions from the read token and shows
them to the operate one. Exits 0 when every check passes; on a failure, prints what was expected and saves
`failure.png`. Any JavaScript error in the browser's console fails the run.
"""

import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS = sys.argv[1].rstrip("/"), sys.argv[2]
TOKENS = [t for t in os.environ.get("CAIRN_UI_TOKENS", "").split(",") if t]
WITHIN = 30


def gql(query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(BASE + "/graphql", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer
    return answer["data"]


def start():
    options = Options()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--window-size=1400,1000", "--disable-dev-shm-usage"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


driver = start()
console = []


def check_console():
    """Every console entry so far; SEVERE ones are JavaScript errors (or failed loads)."""
    for entry in driver.get_log("browser"):
        console.append(entry)
        # Asked without a token, the API answers 401, and Chromium logs the failed load.
        refused = TOKENS and "status of 401" in entry["message"]
        if entry["level"] == "SEVERE" and not refused:
            raise AssertionError(f"browser console error: {entry['message']}")


def until(what, predicate, within=WITHIN):
    # A live view re-renders as events arrive: an element read a moment ago may be gone.
    try:
        return WebDriverWait(driver, within, poll_frequency=0.1,
                             ignored_exceptions=[StaleElementReferenceException]).until(lambda d: predicate())
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; page shows: {main_text()[:1500]}")


def main_text():
    try:
        return driver.find_element(By.ID, "main").text
    except Exception:  # noqa: BLE001 - only for the failure message
        return "(no main)"


def shows(text):
    return text in main_text()


def shot(name):
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def card(title):
    """The big figure of the card headed `title` on the page."""
    for c in driver.find_elements(By.CSS_SELECTOR, ".card"):
        if c.find_element(By.TAG_NAME, "h3").text.lower() == title.lower():
            return c.find_element(By.CSS_SELECTOR, ".big").text
    return None


def click(xpath, index=0):
    """Clicks the `index`th element at `xpath` once the page holds it."""
    def clicked():
        found = driver.find_elements(By.XPATH, xpath)
        if len(found) <= index:
            return False
        found[index].click()
        return True
    until(f"to click {xpath}", clicked)


def nav(label):
    driver.find_element(By.CSS_SELECTOR, f'#nav a[data-view="{label}"]').click()


def dialog_submit(fields=None):
    dialog = driver.find_element(By.ID, "dialog")
    until("the dialog", lambda: dialog.is_displayed())
    for name, value in (fields or {}).items():
        box = dialog.find_element(By.NAME, name)
        box.clear()
        box.send_keys(str(value))
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def step(name):
    print(f"ui: {name}", flush=True)


def run():
    os.makedirs(SHOTS, exist_ok=True)

    step("apps view lists the app with its state")
    driver.get(BASE + "/")
    until("/web running 2 of 2", lambda: "/web" in main_text() and "2 / 2" in main_text() and "running" in main_text())
    shot("apps")

    step("jobs view lists both jobs, the dependent one by its parent")
    nav("jobs")
    until("the jobs", lambda: "tick" in main_text() and "after tick" in main_text())
    shot("jobs")

    step("a job's page: runs, chart, dependency graph; run it now from the UI")
    click("//main//a[text()='tick']")
    until("a succeeded run", lambda: "succeeded" in main_text())
    until("the dependency graph", lambda: sorted(t.text for t in driver.find_elements(By.CSS_SELECTOR, "svg.graph text")) == ["after-tick", "tick"])
    until("a duration bar", lambda: driver.find_elements(By.CSS_SELECTOR, "figure.chart rect.bar.succeeded"))
    before = int(card("Outcomes").split()[0])
    click("//main//button[text()='Run now']")
    dialog_submit()
    until("one more success", lambda: int(card("Outcomes").split()[0]) > before)
    shot("job")

    step("cluster view shows the agent and its resources")
    nav("cluster")
    until("the agent", lambda: "Agents (1)" in main_text() and "ACTIVE" in main_text())
    shot("cluster")

    step("an app's page: scale from the UI and see the new instance")
    driver.get(BASE + "/#/app/%2Fweb")
    until("2 of 2 instances", lambda: card("Instances") == "2 / 2")
    click("//main//button[text()='Scale']")
    dialog_submit({"n": 3})
    until("3 of 3 instances", lambda: card("Instances") == "3 / 3")
    until("three tasks listed", lambda: "Tasks (3)" in main_text())
    step("what the reader opened stays open when a record re-reads the view")
    click("//main//details[starts-with(@data-key, 'task:')]/summary")
    renders = driver.execute_script("return performance.getEntriesByName('cairn:rendered').length")
    gql('mutation { createApp(definition: {id: "/other", cmd: "sleep 3600", cpus: 0.1, mem: 16, instances: 0}) { version } }')
    until("a re-render", lambda: driver.execute_script("return performance.getEntriesByName('cairn:rendered').length") > renders)
    assert driver.find_element(By.XPATH, "//main//details[starts-with(@data-key, 'task:')]").get_attribute("open") is not None, "the history closed"
    click("//main//button[text()='Output']")
    until("the task's output", lambda: "hello" in driver.find_element(By.CSS_SELECTOR, "pre.output").text)
    shot("app")

    step("the timeline, moved back before the scale, shows the old count, read-only")
    scaled = gql('{ events(filter: {types: ["AppScaled"], app: "/web"}, last: 1) { nodes { offset at } } }')["events"]["nodes"][0]
    tasks = gql('{ tasks(app: "/web") { nodes { statuses { state at } } } }')["tasks"]["nodes"]
    running = sorted(s["at"] for t in tasks for s in t["statuses"] if s["state"] == "TASK_RUNNING")
    # The second instance ran before the scale; the third after it.
    assert running[1] < scaled["at"] < running[2], (running, scaled)
    from datetime import datetime
    ms = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000
    target = (ms(running[1]) + ms(scaled["at"])) / 2
    svg = driver.find_element(By.CSS_SELECTOR, "#timeline svg")
    t0, t1 = float(svg.get_attribute("data-t0")), float(svg.get_attribute("data-t1"))
    width = svg.size["width"]
    x = (target - t0) / (t1 - t0) * width
    assert 0 < x < width, (x, width)
    ActionChains(driver).move_to_element_with_offset(svg, int(x - width / 2), 0).click().perform()
    until("the banner", lambda: driver.find_element(By.ID, "banner").is_displayed())
    until("2 of 2 instances as of then", lambda: card("Instances") == "2 / 2")
    assert "Time travel" in driver.find_element(By.ID, "banner").text
    assert not driver.find_elements(By.XPATH, "//main//button[text()='Scale']"), "actions shown in the past"
    past = driver.current_url
    assert "at=" in past, past
    shot("time-travel")

    step("the URL carries the moment: opened afresh it shows the same state")
    driver.get("about:blank")
    driver.get(past)
    until("2 of 2 instances again", lambda: card("Instances") == "2 / 2")
    assert driver.find_element(By.ID, "banner").is_displayed()

    step("replay from there plays the scale, then returns to live")
    Select = __import__("selenium.webdriver.support.select", fromlist=["Select"]).Select
    Select(driver.find_element(By.CSS_SELECTOR, ".tl-controls select")).select_by_value("3600")
    driver.find_element(By.XPATH, "//div[@class='tl-controls']/button[contains(., 'Replay')]").click()
    until("3 of 3 after the replay", lambda: card("Instances") == "3 / 3")
    until("live again", lambda: not driver.find_element(By.ID, "banner").is_displayed())

    step("Live returns from the past")
    driver.get(past)
    until("the past", lambda: card("Instances") == "2 / 2")
    driver.find_element(By.XPATH, "//div[@id='banner']//button").click()
    until("3 of 3 live", lambda: card("Instances") == "3 / 3")

    step("a definition with errors shows them at their path and changes nothing")
    nav("apps")
    until("the apps", lambda: "/web" in main_text())
    click("//main//button[text()='New app']")
    text = driver.find_element(By.ID, "definition")
    text.clear()
    text.send_keys(json.dumps({"id": "/bad", "cmd": "sleep 1", "cpus": 0.1, "mem": 16, "instances": -1}))
    driver.find_element(By.CSS_SELECTOR, "#dialog button[type=submit]").click()
    errors = driver.find_element(By.CSS_SELECTOR, ".field-errors")
    until("the field error", lambda: "/instances" in errors.text)
    shot("field-errors")
    text.clear()
    text.send_keys(json.dumps({"id": "/ui-made", "cmd": "sleep 3600", "cpus": 0.1, "mem": 16, "instances": 1}))
    driver.find_element(By.CSS_SELECTOR, "#dialog button[type=submit]").click()
    until("the new app listed, live", lambda: "/ui-made" in main_text())
    assert gql('{ app(id: "/bad") { id } }')["app"] is None

    step("events view follows the log live")
    nav("events")
    until("the events", lambda: "AppScaled" in main_text())
    gql('mutation { runJob(name: "tick") }')
    until("the new run, pushed", lambda: "JobRunTriggered" in main_text())
    shot("events")

    step("audit and deployments")
    nav("audit")
    until("the scale in the audit", lambda: "AppScaled" in main_text() and "app:/web" in main_text())
    shot("audit")
    nav("deployments")
    until("deployments", lambda: "FINISHED" in main_text())
    shot("deployments")

    step("keyboard: access keys switch views, the timeline takes arrow keys")
    driver.find_element(By.TAG_NAME, "body").send_keys("j")
    until("the jobs view by key", lambda: "Schedule" in main_text())
    driver.find_element(By.TAG_NAME, "body").send_keys("t")
    driver.switch_to.active_element.send_keys(Keys.HOME)
    until("the start of the log", lambda: driver.find_element(By.ID, "banner").is_displayed())
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    until("live by Escape", lambda: not driver.find_element(By.ID, "banner").is_displayed())

    step("a narrow window")
    driver.set_window_size(420, 900)
    nav("apps")
    until("the apps, narrow", lambda: "/web" in main_text())
    shot("apps-narrow")
    check_console()


def give_token(secret):
    dialog = driver.find_element(By.ID, "dialog")
    until("the token dialog", lambda: dialog.is_displayed() and "A token is needed" in dialog.text)
    box = dialog.find_element(By.ID, "token")
    box.clear()
    box.send_keys(secret)
    dialog.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def who():
    return driver.find_element(By.ID, "who").text


def run_with_tokens():
    os.makedirs(SHOTS, exist_ok=True)
    read, operate = TOKENS
    step("without a token the page asks for one")
    driver.get(BASE + "/#/app/%2Fweb")
    give_token(read)

    step("a read token sees the app, and no actions")
    until("the app with the reader named", lambda: card("Instances") == "2 / 2" and "reader · read" in who())
    assert not driver.find_elements(By.XPATH, "//main//button[text()='Scale']"), "actions shown to a read token"
    nav("apps")
    until("the app listed", lambda: "/web" in main_text())
    assert not driver.find_elements(By.XPATH, "//main//button[text()='New app']"), "New app shown to a read token"
    shot("token-read")

    step("an operate token sees the actions and scales")
    driver.find_element(By.XPATH, "//*[@id='who']//button[text()='Change token']").click()
    give_token(operate)
    until("the operator named", lambda: "deployer · operate" in who())
    driver.get(BASE + "/#/app/%2Fweb")
    click("//main//button[text()='Scale']")
    dialog_submit({"n": 1})
    until("1 of 1 instances", lambda: card("Instances") == "1 / 1")
    shot("token-operate")
    check_console()


try:
    run_with_tokens() if TOKENS else run()
    print(f"ui: ok ({len(console)} console entries, none an error)")
except Exception as e:  # noqa: BLE001 - report, screenshot, fail
    os.makedirs(SHOTS, exist_ok=True)
    try:
        driver.save_screenshot(os.path.join(SHOTS, "failure.png"))
        for entry in driver.get_log("browser"):
            print(f"console: {entry['level']} {entry['message']}", file=sys.stderr)
    finally:
        print(f"ui check failed: {type(e).__name__}: {e}", file=sys.stderr)
        driver.quit()
    sys.exit(1)
driver.quit()
