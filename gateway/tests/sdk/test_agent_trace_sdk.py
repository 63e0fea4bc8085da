"""An agent loop driven by the official openai SDK reconstructs as one trace.

Its own stack: sluice exporting every request's spans (`sampling: all`) over OTLP/HTTP to a
receiver in this file, and mock-llm in Anthropic's dialect, which answers a request offering
tools with calls to them (translated by Sluice into OpenAI `tool_calls`). The agent sends three steps under one
parent span (`traceparent`), each answering the previous step's tool calls with `tool`
messages, as an SDK-driven agent does. The receiver decodes the protobuf bodies with a small
wire-format reader (only the fields checked here), since the test environment has no protobuf
package.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import openai
import pytest

from conftest import _port_open, _stop, _wait_until, bin_dir, free_ports

KEY = "sk-sluice-agent-" + secrets.token_hex(8)
TRACE = secrets.token_hex(16)
AGENT_SPAN = secrets.token_hex(8)
SERVER_KIND = 2


# === protobuf wire format (enough of it) ===

def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if c < 0x80:
            return n, i
        shift += 7


def fields(b: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: ints for varint/fixed, bytes for length-delimited."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 1:
            v, i = int.from_bytes(b[i:i + 8], "little"), i + 8
        elif wire == 5:
            v, i = int.from_bytes(b[i:i + 4], "little"), i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wire}")
        yield num, v


def _attrs(kvs: list[bytes]) -> dict[str, str]:
    out = {}
    for kv in kvs:
        f = dict(fields(kv))
        value = dict(fields(f.get(2, b"")))
        if 1 in value:  # AnyValue.string_value
            out[f[1].decode()] = value[1].decode()
    return out


def spans_of(body: bytes) -> list[dict]:
    """The spans of an ExportTraceServiceRequest."""
    out = []
    for n1, rs in fields(body):
        for n2, ss in fields(rs) if n1 == 1 else []:
            for n3, sp in fields(ss) if n2 == 2 else []:
                if n3 != 2:
                    continue
                attrs, events, s = [], [], {}
                for n, v in fields(sp):
                    if n == 9:
                        attrs.append(v)
                    elif n == 11:
                        ev = list(fields(v))
                        events.append({
                            "name": next((x.decode() for k, x in ev if k == 2), ""),
                            "attrs": _attrs([x for k, x in ev if k == 3]),
                        })
                    else:
                        s[n] = v
                out.append({
                    "trace_id": s.get(1, b"").hex(),
                    "span_id": s.get(2, b"").hex(),
                    "parent": s.get(4, b"").hex(),
                    "name": s.get(5, b"").decode(),
                    "kind": s.get(6, 0),
                    "start": s.get(7, 0),
                    "attrs": _attrs(attrs),
                    "events": events,
                })
    return out


class Receiver(http.server.ThreadingHTTPServer):
    spans: list[dict]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/v1/traces"):
            self.server.spans.extend(spans_of(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def agent_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Receiver]]:
    rx = Receiver(("127.0.0.1", 0), Handler)
    rx.spans = []
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    sluice, mock_llm = bin_dir() / "sluice", bin_dir() / "mock-llm"
    workdir = tmp_path_factory.mktemp("sluice-agent")
    port, admin_port, mock_port = free_ports(3)
    provider_key = "sk-agent-provider-" + secrets.token_hex(8)
    env = {**os.environ, "AGENT_PROVIDER_KEY": provider_key}
    cfg = workdir / "sluice.yaml"
    cfg.write_text(f"""\
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin_port}
  threads: 2
  shutdown_grace: 1s
  data_dir: "{workdir / 'data'}"
telemetry:
  sample: {{ head_ratio: 0.0 }}
  destinations:
    - {{ name: agent, endpoint: "http://127.0.0.1:{rx.server_address[1]}", protocol: http, sampling: all, export_interval: 100ms }}
providers:
  claude: {{ kind: anthropic, base_url: "http://127.0.0.1:{mock_port}", api_key_env: AGENT_PROVIDER_KEY }}
models:
  mock-chat: {{ provider: claude, upstream_model: claude-mock }}
keys:
  - {{ name: sdk-agent, key_sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", tenant: sdk }}
""")
    log, mock_log = workdir / "sluice.log", workdir / "mock-llm.log"
    procs: list[subprocess.Popen] = []
    try:
        with mock_log.open("wb") as out:
            procs.append(subprocess.Popen(
                [str(mock_llm), "--listen", f"127.0.0.1:{mock_port}",
                 "--api-key-env", "AGENT_PROVIDER_KEY"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        _wait_until("mock-llm", procs[0], mock_log, lambda: _port_open(mock_port))
        with log.open("wb") as out:
            procs.append(subprocess.Popen([str(sluice), "--config", str(cfg)], stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        _wait_until("sluice", procs[1], log, lambda: _port_open(port))
        yield f"http://127.0.0.1:{port}/v1", rx
    finally:
        for p in reversed(procs):
            _stop(p)
        rx.shutdown()


TOOLS = [{
    "type": "function",
    "function": {"name": "search_docs", "description": "Search the runbooks.",
                 "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
}]


def test_an_sdk_agent_loop_is_one_trace_with_its_tool_call_ids(agent_stack: tuple[str, Receiver]) -> None:
    base_url, rx = agent_stack
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=10,
                           http_client=openai.DefaultHttpxClient(trust_env=False))
    headers = {"traceparent": f"00-{TRACE}-{AGENT_SPAN}-01", "x-conversation-id": "conv-sdk"}
    messages: list[dict] = [{"role": "user", "content": "find the runbook for disk pressure"}]
    returned, answered, made = [], [], []
    for step in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="mock-chat", messages=messages, tools=TOOLS, extra_headers=headers)
        returned.append(raw.headers["traceparent"])
        msg = raw.parse().choices[0].message
        # The model's tool calls, or the agent's own when the mock made none: either way the
        # next step carries their results under these ids.
        made.append([(c.id, c.function.name) for c in (msg.tool_calls or [])])
        ids = [c.id for c in (msg.tool_calls or [])] or [f"call_step{step}_{secrets.token_hex(4)}"]
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "search_docs", "arguments": "{}"}} for i in ids]})
        messages += [{"role": "tool", "tool_call_id": i, "content": "runbooks/disk.md"} for i in ids]
        answered.append(ids)

    deadline = time.monotonic() + 20
    servers: list[dict] = []
    while time.monotonic() < deadline:
        servers = [s for s in rx.spans if s["kind"] == SERVER_KIND and s["trace_id"] == TRACE]
        if len(servers) >= 3:
            break
        time.sleep(0.05)
    assert len(servers) == 3, rx.spans
    servers.sort(key=lambda s: s["start"])
    for i, s in enumerate(servers):
        assert s["parent"] == AGENT_SPAN, "the agent's span parents each step"
        assert returned[i] == f"00-{TRACE}-{s['span_id']}-01", "the returned traceparent names the server span"
        assert s["attrs"].get("gen_ai.conversation.id") == "conv-sdk"
        got = [e["attrs"].get("gen_ai.tool.call.id") for e in s["events"] if e["name"] == "gen_ai.tool.message"]
        assert got == [x for ids in answered[:i] for x in ids], f"step {i}"
        calls = [(e["attrs"].get("gen_ai.tool.call.id"), e["attrs"].get("gen_ai.tool.name"))
                 for e in s["events"] if e["name"] == "gen_ai.tool.call"]
        assert calls == made[i], f"step {i}: the answer's tool calls"
    assert all(made), "the model made tool calls at every step"
    server_ids = {s["span_id"] for s in servers}
    clients = [s for s in rx.spans if s["trace_id"] == TRACE and s["kind"] != SERVER_KIND]
    assert clients and all(c["parent"] in server_ids for c in clients), "attempts hang under their step"
