"""The openai SDK over HTTPS with a test CA, against the real `sluice` binary.

Its own stack: sluice with `server.tls` and the built-in mock provider (no provider key), a CA
and a server certificate for 127.0.0.1 made with the `openssl` command at test time. The SDK
trusts only that CA (an `ssl.SSLContext` with it as the sole root), as a client of a private
deployment would.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Iterator

import openai
import pytest

from conftest import _port_open, _stop, _wait_until, bin_dir, free_ports

KEY = "sk-sluice-tls-" + secrets.token_hex(8)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(d: Path) -> Path:
    """A CA, and a certificate for 127.0.0.1 and localhost signed by it; returns the CA file."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=sluice sdk test CA", cwd=d)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=sluice-sdk", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d / "ca.crt"


@pytest.fixture(scope="module")
def https_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test certificates")
    sluice = bin_dir() / "sluice"
    workdir = tmp_path_factory.mktemp("sluice-tls")
    ca = make_certs(workdir)
    port, admin_port = free_ports(2)
    cfg = workdir / "sluice.yaml"
    cfg.write_text(f"""\
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin_port}
  threads: 2
  shutdown_grace: 1s
  data_dir: "{workdir / 'data'}"
  tls: {{ cert: "{workdir / 'server.crt'}", key: "{workdir / 'server.key'}" }}
providers:
  local: {{ kind: mock, ttft_ms: 0, tokens_per_s: 200 }}
models:
  mock-chat: {{ provider: local }}
keys:
  - {{ name: sdk-tls, key_sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", tenant: sdk }}
""")
    log = workdir / "sluice.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(sluice), "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        _wait_until("sluice", proc, log, lambda: _port_open(port))
        yield f"https://127.0.0.1:{port}/v1", ca
    finally:
        _stop(proc)


def sdk(base_url: str, ca: Path) -> openai.OpenAI:
    ctx = ssl.create_default_context(cafile=str(ca))
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=10,
                         http_client=openai.DefaultHttpxClient(verify=ctx, trust_env=False))


def test_chat_over_https_with_a_test_ca(https_stack: tuple[str, Path]) -> None:
    base_url, ca = https_stack
    resp = sdk(base_url, ca).chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "hello over TLS"}])
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content


def test_streamed_chat_over_https(https_stack: tuple[str, Path]) -> None:
    base_url, ca = https_stack
    stream = sdk(base_url, ca).chat.completions.create(
        model="mock-chat", messages=[{"role": "user", "content": "stream over TLS"}], stream=True)
    chunks = list(stream)
    assert len(chunks) > 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_client_without_the_ca_refuses_the_certificate(https_stack: tuple[str, Path]) -> None:
    base_url, _ = https_stack
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=10,
                           http_client=openai.DefaultHttpxClient(trust_env=False))
    with pytest.raises(openai.APIConnectionError):
        client.models.list()

