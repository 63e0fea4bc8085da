"""Fixtures for the openai-SDK tests: the real `mock-llm` and `sluice` binaries on loopback.

One stack serves the whole session:

    openai SDK --> sluice (127.0.0.1:<port>, admin :<admin>) --> mock-llm (127.0.0.1:<mock>/v1)

mock-llm requires a canary provider key (`sk-CANARY-<random hex>`), which only the two child
processes see, through an environment variable. At session end both processes are stopped and
the canary must appear in neither log nor in any response body the tests received.

Binaries come from `$SLUICE_BIN_DIR` (default `<repo>/target/debug`); build them first with
`cargo build --workspace --bins`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import httpx2
import openai
import pytest

REPO = Path(__file__).resolve().parents[3]
CANARY_ENV = "SLUICE_SDK_TEST_PROVIDER_KEY"
VIRTUAL_KEY = "sk-sluice-sdk-" + secrets.token_hex(8)
# A second key that may send one request per minute.
LIMITED_KEY = "sk-sluice-sdk-rpm1-" + secrets.token_hex(8)
MAX_BODY_BYTES = 65536
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def bin_dir() -> Path:
    raw = os.environ.get("SLUICE_BIN_DIR")
    if not raw:
        return REPO / "target" / "debug"
    path = Path(raw)
    if not path.is_absolute() and not path.exists():
        path = REPO / path
    return path.resolve()


def free_ports(n: int) -> list[int]:
    """Distinct free loopback ports: all are bound at once, then released."""
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


def policy_yaml(port: int, admin_port: int, mock_port: int, key_sha256: str) -> str:
    return f"""\
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin_port}
  max_body_bytes: {MAX_BODY_BYTES}
  threads: 2
  shutdown_grace: 1s

providers:
  up:
    kind: openai
    base_url: http://127.0.0.1:{mock_port}/v1
    api_key_env: {CANARY_ENV}
    connect_timeout: 2s
  claude:
    kind: anthropic
    base_url: http://127.0.0.1:{mock_port}
    api_key_env: {CANARY_ENV}
    connect_timeout: 2s
  azure:
    kind: azure_openai
    base_url: http://127.0.0.1:{mock_port}
    api_key_env: {CANARY_ENV}
    api_version: 2024-10-21
    connect_timeout: 2s

models:
  claude-up: {{ provider: claude, upstream_model: claude-mock }}   # mock-llm in Anthropic's dialect
  openai-down: {{ provider: up, upstream_model: "down@503" }}      # always 503
  gpt-4o-mini: {{ provider: up }}                            # upstream `gpt-4o-mini`
  rl-up: {{ provider: up, upstream_model: "rl@429:1" }}       # always 429, retry-after 1s
  cut-up: {{ provider: up, upstream_model: "gpt-4o-mini@cut:3" }}  # stream breaks after 3 events
  emb: {{ provider: up, kind: embedding }}
  azure-up: {{ provider: azure, upstream_model: azure-mock }}  # mock-llm in Azure OpenAI's dialect

routes:
  - name: cached
    match: {{ model: cached-mini }}
    targets: [ {{ model: gpt-4o-mini }} ]
    cache: {{ ttl: 5m }}
  - name: rl
    match: {{ model: rl }}
    targets: [ {{ model: rl-up }} ]
    fallbacks: []
    retry: {{ max_attempts: 1 }}
  - name: cut
    match: {{ model: cut }}
    targets: [ {{ model: cut-up }} ]
    fallbacks: []
    retry: {{ max_attempts: 1 }}

  - name: cross
    match: {{ model: cross }}
    targets: [ {{ model: openai-down }} ]
    fallbacks: [ claude-up ]

keys:
  - {{ name: sdk-test, key_sha256: "{key_sha256}", tenant: sdk-test }}
  - {{ name: sdk-limited, key_sha256: "{hashlib.sha256(LIMITED_KEY.encode()).hexdigest()}", tenant: sdk-test, limits: {{ rpm: 1 }} }}
"""


@dataclasses.dataclass
class Captured:
    """One response as the client received it (the whole body, also for streams)."""

    method: str
    url: str
    status: int
    headers: httpx2.Headers
    body: bytearray


class _TeeStream(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self._inner = inner
        self._sink = sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class TeeTransport(httpx2.BaseTransport):
    """Records every response body the tests receive, so the canary check can see them."""

    def __init__(self, log: list[Captured]) -> None:
        self._inner = httpx2.HTTPTransport()
        self._log = log

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        resp = self._inner.handle_request(request)
        cap = Captured(request.method, str(request.url), resp.status_code, resp.headers, bytearray())
        self._log.append(cap)
        return httpx2.Response(
            status_code=resp.status_code,
            headers=resp.headers,
            stream=_TeeStream(resp.stream, cap.body),  # type: ignore[arg-type]
            extensions=resp.extensions,
        )

    def close(self) -> None:
        self._inner.close()


@dataclasses.dataclass
class Stack:
    port: int
    admin_port: int
    mock_port: int
    canary: str
    key: str
    workdir: Path
    responses: list[Captured]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def mock_stats(self) -> dict:
        url = f"http://127.0.0.1:{self.mock_port}/_mock/stats"
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback only)
            return json.load(r)

    def http_client(self) -> httpx2.Client:
        return openai.DefaultHttpxClient(transport=TeeTransport(self.responses), trust_env=False)

    def client(self, api_key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or self.key,
            max_retries=0,
            timeout=10,
            http_client=self.http_client(),
        )


def _log_tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


def _wait_until(what: str, proc: subprocess.Popen, log: Path, ok) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} before it was ready; log:\n{_log_tail(log)}")
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{what} not ready within {READY_TIMEOUT_S}s; log:\n{_log_tail(log)}")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 (loopback only)
        return r.status == 200


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bins = bin_dir()
    sluice, mock_llm = bins / "sluice", bins / "mock-llm"
    for b in (sluice, mock_llm):
        if not os.access(b, os.X_OK):
            pytest.fail(f"{b} is missing: run `cargo build --workspace --bins` (or set SLUICE_BIN_DIR)")

    workdir = tmp_path_factory.mktemp("sluice-sdk")
    port, admin_port, mock_port = free_ports(3)
    canary_hex = secrets.token_hex(16)
    canary = "sk-CANARY-" + canary_hex
    env = {k: v for k, v in os.environ.items() if k != CANARY_ENV}
    child_env = {**env, CANARY_ENV: canary, "SLUICE_LOG": "debug", "RUST_BACKTRACE": "1"}

    key_sha = hashlib.sha256(VIRTUAL_KEY.encode()).hexdigest()
    hashed = subprocess.run(
        [str(sluice), "hash-key"], input=VIRTUAL_KEY, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    assert hashed == key_sha, f"`sluice hash-key` printed {hashed!r}, sha256 is {key_sha}"

    cfg = workdir / "sluice.yaml"
    cfg.write_text(policy_yaml(port, admin_port, mock_port, key_sha))
    mock_log, gw_log = workdir / "mock-llm.log", workdir / "sluice.log"
    procs: list[subprocess.Popen] = []
    responses: list[Captured] = []
    try:
        with mock_log.open("wb") as out:
            mock = subprocess.Popen(
                [str(mock_llm), "--listen", f"127.0.0.1:{mock_port}", "--prefix", "/v1", "--api-key-env", CANARY_ENV],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env,
            )
        procs.append(mock)
        _wait_until("mock-llm", mock, mock_log, lambda: _http_ok(f"http://127.0.0.1:{mock_port}/_mock/stats"))

        with gw_log.open("wb") as out:
            gw = subprocess.Popen(
                [str(sluice), "--config", str(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env,
            )
        procs.append(gw)
        _wait_until(
            "sluice",
            gw,
            gw_log,
            lambda: _http_ok(f"http://127.0.0.1:{admin_port}/readyz") and _port_open(port),
        )

        yield Stack(port, admin_port, mock_port, canary, VIRTUAL_KEY, workdir, responses)

        stats = mock_stats_or_none(mock_port)
    finally:
        for p in reversed(procs):
            _stop(p)

    # Checked after the processes have exited and flushed their logs, whatever the tests did.
    # The random half of the canary is searched too, to catch a key logged in part.
    problems = []
    for name, log in (("sluice", gw_log), ("mock-llm", mock_log)):
        text = log.read_text(errors="replace")
        if "CANARY" in text or canary_hex in text:
            problems.append(f"the provider key leaked into the {name} log ({log})")
        if VIRTUAL_KEY in text:
            problems.append(f"the virtual key leaked into the {name} log ({log})")
    for cap in responses:
        body = bytes(cap.body)
        if b"CANARY" in body or canary_hex.encode() in body:
            problems.append(f"the provider key leaked into a response body: {cap.method} {cap.url} {cap.status}")
        if cap.status >= 400 and not cap.headers.get("x-request-id"):
            problems.append(f"error response without x-request-id: {cap.method} {cap.url} {cap.status}")
    if stats is not None and stats.get("unauthorized", 0) != 0:
        problems.append(f"mock-llm refused {stats['unauthorized']} request(s) for a wrong provider key: {stats}")
    if not responses:
        problems.append("no response was captured: the canary check saw nothing")
    assert not problems, "\n".join(problems) + f"\n(logs and policy in {workdir})"


def mock_stats_or_none(mock_port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{mock_port}/_mock/stats", timeout=5) as r:  # noqa: S310
            return json.load(r)
    except OSError:
        return None


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    c = stack.client()
    yield c
    c.close()


@pytest.fixture(scope="session")
def raw(stack: Stack) -> Iterator[httpx2.Client]:
    """A plain HTTP client (also recorded), for what the SDK cannot send."""
    c = stack.http_client()
    yield c
    c.close()
