"""The operator's console in a real browser: Debian's headless Chromium, driven by Selenium
through Debian's chromedriver, against the real `sluice` and `mock-llm` binaries on loopback.

A drill runs while the browser looks: mock-llm fails every request to the `flaky` target
(`POST /_mock/faults`), traffic keeps flowing (retried onto `steady`), `flaky`'s availability
SLO burns, and the remediation rule takes it out of the route. The test signs in, opens every
view and waits for it to show live data of the drill, acknowledges the incident from the
incidents view, and waits for that step in the timeline. A screenshot of each view is saved to
`$CONSOLE_SCREENSHOTS` (default `<repo>/target/console-screenshots`).

Needs `chromium` and `chromium-driver` (scripts/ensure-deps.sh --browser installs them) and
the binaries from `cargo build --workspace --bins` in `$SLUICE_BIN_DIR`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[3]
KEY_ENV = "SLUICE_BROWSER_PROVIDER_KEY"
ADMIN_TOKEN = "sk-sluice-browser-admin-" + secrets.token_hex(8)
VIRTUAL_KEY = "sk-sluice-browser-" + secrets.token_hex(8)
WAIT_S = 30
# The drill's traffic: bounded in count and time whatever the test does.
MAX_REQUESTS = 3000
MAX_TRAFFIC_S = 180


def bin_dir() -> Path:
    raw = os.environ.get("SLUICE_BIN_DIR")
    path = Path(raw) if raw else REPO / "target" / "debug"
    if not path.is_absolute() and not path.exists():
        path = REPO / path
    return path.resolve()


def shots_dir() -> Path:
    raw = os.environ.get("CONSOLE_SCREENSHOTS")
    path = Path(raw) if raw else REPO / "target" / "console-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def policy(port: int, admin_port: int, mock_port: int, data_dir: Path) -> str:
    return f"""\
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin_port}
  threads: 2
  shutdown_grace: 1s
  data_dir: "{data_dir}"
providers:
  up: {{ kind: openai, base_url: "http://127.0.0.1:{mock_port}/v1", api_key_env: {KEY_ENV} }}
models:
  flaky: {{ provider: up, pricing: {{ input: 1, output: 2 }} }}
  steady: {{ provider: up, pricing: {{ input: 1, output: 2 }} }}
  judge-model: {{ provider: up, pricing: {{ input: 1, output: 2 }} }}
routes:
  - name: chat
    match: {{ model: chat }}
    targets: [ {{ model: flaky }}, {{ model: steady }} ]
    retry: {{ max_attempts: 2 }}
    health: {{ consecutive_failures: 1000, min_requests: 1000000 }}
    judge: {{ model: judge-model, sample: 0.5, rubric: helpfulness }}
    slos:
      - {{ name: availability, objective: 99, sli: errors, min_events: 5 }}
    remediation:
      - {{ name: fo, when: {{ slo: availability, burn: page }}, do: failover, hold: 10m, probe_share: 0.1, runbook_url: "https://runbooks.example/fo" }}
slo: {{ window_scale: 0.001, evaluate_every: 100ms }}
tenants:
  browser: {{ budget: {{ usd_per_day: 1, usd_per_month: 20 }} }}
keys:
  - {{ name: browser, key_sha256: "{sha(VIRTUAL_KEY)}", tenant: browser }}
admin:
  tokens:
    - {{ name: oncall, token_sha256: "{sha(ADMIN_TOKEN)}" }}
"""


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback only)
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what: str, ok, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}; log:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{what} not ready in 10 s; log:\n{log.read_text(errors='replace')[-4000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class Drill:
    """mock-llm and sluice with a failing target, and traffic until stopped."""

    def __init__(self, workdir: Path):
        bins = bin_dir()
        self.sluice, self.mock_llm = bins / "sluice", bins / "mock-llm"
        for b in (self.sluice, self.mock_llm):
            if not os.access(b, os.X_OK):
                pytest.fail(f"{b} is missing: run `cargo build --workspace --bins` (or set SLUICE_BIN_DIR)")
        self.port, self.admin_port, self.mock_port = free_ports(3)
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.stopping = threading.Event()
        self.sent = 0
        self.traffic = threading.Thread(target=self._traffic, daemon=True)

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> None:
        env = {**os.environ, KEY_ENV: "sk-CANARY-" + secrets.token_hex(16)}
        mock_log, gw_log = self.workdir / "mock-llm.log", self.workdir / "sluice.log"
        with mock_log.open("wb") as out:
            mock = subprocess.Popen(
                [str(self.mock_llm), "--listen", f"127.0.0.1:{self.mock_port}", "--prefix", "/v1", "--api-key-env", KEY_ENV],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            )
        self.procs.append(mock)
        mock_url = f"http://127.0.0.1:{self.mock_port}"
        wait_for("mock-llm", lambda: http("GET", f"{mock_url}/_mock/stats")[0] == 200, mock, mock_log)
        # The drill: every request to `flaky` fails with 503.
        status, body = http("POST", f"{mock_url}/_mock/faults", {"model": "flaky", "outage": "status"})
        assert status == 200, body
        cfg = self.workdir / "sluice.yaml"
        cfg.write_text(policy(self.port, self.admin_port, self.mock_port, self.workdir / "data"))
        with gw_log.open("wb") as out:
            gw = subprocess.Popen([str(self.sluice), "--config", str(cfg)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(gw)
        wait_for("sluice", lambda: http("GET", f"{self.admin}/readyz")[0] == 200, gw, gw_log)
        self.traffic.start()

    def _traffic(self) -> None:
        started = time.monotonic()
        url = f"http://127.0.0.1:{self.port}/v1/chat/completions"
        while not self.stopping.is_set() and self.sent < MAX_REQUESTS and time.monotonic() - started < MAX_TRAFFIC_S:
            # Every other request streams, so the overview has a time to first token.
            body = {"model": "chat", "stream": self.sent % 2 == 0, "messages": [{"role": "user", "content": f"Tell me about topic {self.sent % 7}."}]}
            try:
                http("POST", url, body, {"authorization": f"Bearer {VIRTUAL_KEY}"})
            except OSError:
                pass
            self.sent += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        if self.traffic.is_alive():
            self.traffic.join(timeout=15)
        for p in reversed(self.procs):
            stop(p)


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    d = Drill(tmp_path_factory.mktemp("sluice-browser"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
    if not browser or not driver:
        pytest.fail("chromium and chromium-driver are needed: run scripts/ensure-deps.sh --browser")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver = chromium_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    # An explicit driver path: Selenium Manager never downloads a browser or a driver.
    b = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    b.set_page_load_timeout(WAIT_S)
    try:
        yield b
    finally:
        b.quit()


def shot(b: webdriver.Chrome, name: str) -> None:
    path = shots_dir() / f"{name}.png"
    assert b.save_screenshot(str(path)), f"cannot save {path}"


def text_of(b: webdriver.Chrome, css: str) -> str:
    # Read in one script: the console re-renders every 2 s, so element handles go stale.
    return b.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText).join('\\n')", css
    )


def retry_stale(action) -> None:
    """Runs `action`, again when the console re-rendered the element it was using."""
    for attempt in range(10):
        try:
            action()
            return
        except StaleElementReferenceException:
            if attempt == 9:
                raise
            time.sleep(0.05)


def wait_text(b: webdriver.Chrome, css: str, *needles: str) -> str:
    """Waits until the elements under `css` show every needle; returns their text."""
    last = ""

    def ok(_):
        nonlocal last
        last = text_of(b, css)
        return all(n in last for n in needles)

    try:
        WebDriverWait(b, WAIT_S, poll_frequency=0.25).until(ok)
    except Exception:  # noqa: BLE001 (report what was on screen)
        shot(b, "failure")
        pytest.fail(f"{css} never showed {needles!r}; it showed:\n{last}")
    return last


def test_console_shows_a_drill_live_and_records_an_operator_action(drill: Drill, browser: webdriver.Chrome) -> None:
    b = browser
    b.get(f"{drill.admin}/console")
    assert b.find_elements(By.CSS_SELECTOR, "form[action='/console/login']"), "the login page comes first"
    assert not b.find_elements(By.CSS_SELECTOR, "nav"), "nothing of the console before login"
    shot(b, "0-login")

    b.find_element(By.ID, "token").send_keys("not-the-token")
    b.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_text(b, "body", "not valid")

    b.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    b.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_text(b, "#status", "Live")
    # The session cookie is out of the page's reach.
    assert "sluice_console" not in b.execute_script("return document.cookie")
    assert ADMIN_TOKEN not in b.current_url

    views = [
        ("overview", "#view-overview", ["chat", "Open incidents"]),
        ("targets", "#view-targets", ["up/flaky", "up/steady", "failover"]),
        ("slos", "#view-slos", ["availability", "Pause rule", "failover of up/flaky"]),
        ("incidents", "#view-incidents", ["failover up/flaky on chat", "opened", "action_taken", "runbook"]),
        ("judge", "#view-judge", ["helpfulness", "judge-model"]),
        ("tenants", "#view-tenants", ["browser", "1.00"]),
    ]
    for i, (name, css, needles) in enumerate(views, start=1):
        b.find_element(By.CSS_SELECTOR, f"nav a[data-view='{name}']").click()
        WebDriverWait(b, WAIT_S).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))
        wait_text(b, css, *needles)
        shot(b, f"{i}-{name}")

    # Live: the overview's rates come from successive scrapes, without a reload.
    b.find_element(By.CSS_SELECTOR, "nav a[data-view='overview']").click()

    def chat_rate(_) -> bool:
        rows = b.execute_script(
            "return Array.from(document.querySelectorAll('#view-overview tbody tr'))"
            ".map(r => Array.from(r.querySelectorAll('th, td')).map(c => c.innerText))"
        )
        for cells in rows:
            if cells and cells[0] == "chat":
                try:
                    return float(cells[1]) > 0
                except ValueError:
                    return False
        return False

    WebDriverWait(b, WAIT_S, poll_frequency=0.25).until(chat_rate)
    wait_text(b, "#view-overview", "Requests / s", "p95 TTFT", " ms")
    shot(b, "1-overview")

    # An operator action from the incidents view lands in the timeline.
    b.find_element(By.CSS_SELECTOR, "nav a[data-view='incidents']").click()
    incident_id = b.execute_script(
        "return document.querySelector('#view-incidents article.incident.open').dataset.incident"
    )
    article = f"#view-incidents article[data-incident='{incident_id}']"
    # While the note has the focus the view is not re-rendered under the operator's hands (the
    # typed text is kept across renders too); finding and using an element is retried when a
    # re-render replaced it in between.
    retry_stale(lambda: b.find_element(By.CSS_SELECTOR, f"{article} input[type=text]").click())
    retry_stale(lambda: b.switch_to.active_element.send_keys("on it: flaky is failing over"))
    retry_stale(
        lambda: b.find_element(By.CSS_SELECTOR, article)
        .find_element(By.XPATH, ".//button[normalize-space()='Acknowledge']")
        .click()
    )
    wait_text(b, f"#view-incidents article[data-incident='{incident_id}'] ol", "acknowledged by oncall (console)", "on it: flaky is failing over")
    shot(b, "7-acknowledged")

    # Readable on a phone: the same view at a phone's width, without sideways scrolling of
    # the page itself (wide tables scroll inside their own box).
    b.set_window_size(390, 844)
    wait_text(b, article, "acknowledged by oncall (console)")
    overflow = b.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow}px on a phone"
    shot(b, "8-incidents-phone")
    b.set_window_size(1280, 1000)

    # The same step through the API, with the bearer token.
    status, body = http("GET", f"{drill.admin}/admin/incidents", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200
    # The drill's failover may heal and resolve the incident meanwhile: it is then a recent one.
    view = json.loads(body)
    events = [e for i in view["open"] + view["recent"] if str(i["id"]) == incident_id for e in i["events"]]
    assert any(e["kind"] == "operator" and e["op"] == "acknowledged" and e["by"] == "oncall (console)" for e in events)

    # Sign out: back to the login page, and the old session no longer opens the app.
    b.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    WebDriverWait(b, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, "form[action='/console/login']")))
    b.get(f"{drill.admin}/console")
    assert not b.find_elements(By.CSS_SELECTOR, "nav")
