"""The official openai Python SDK against Sluice in front of mock-llm.

Every test goes SDK -> sluice -> mock-llm over loopback. A successful answer also proves that
Sluice sent mock-llm the provider key: mock-llm refuses requests without it.
"""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from conftest import LIMITED_KEY, MAX_BODY_BYTES, Stack

PROMPT = [{"role": "user", "content": "Tell me something about sluices."}]
ERROR_FIELDS = {"message", "type", "param", "code"}


def assert_openai_error(exc: openai.APIStatusError, status: int, type_: str, code: str | None = None) -> dict:
    """Status, OpenAI error JSON shape, and the x-request-id header of an error response."""
    assert exc.status_code == status, exc
    assert exc.response.headers.get("x-request-id"), f"{status} response without x-request-id"
    assert exc.request_id == exc.response.headers["x-request-id"]
    assert exc.response.headers["content-type"].startswith("application/json")
    err = exc.response.json()["error"]
    assert set(err) == ERROR_FIELDS, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == type_, err
    if code is not None:
        assert err["code"] == code, err
    return err


# ---------------------------------------------------------------------------------------------
# Chat completions


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"  # as mock-llm echoes the upstream model
    assert len(r.choices) == 1
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    u = r.usage
    assert u is not None and u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_chat_streaming_without_stream_options(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))
    assert chunks, "no chunks"
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        # Sluice asks upstream for usage to meter it; it must not pass the usage-only chunk
        # (choices == []) to a client that did not ask for it.
        assert c.choices, f"a chunk with empty choices reached a client that did not ask: {c}"
        assert c.usage is None, f"usage reached a client that did not ask: {c}"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_cached_stream_replays_to_the_sdk(stack: Stack, client: openai.OpenAI) -> None:
    def run() -> tuple[str, str | None, str]:
        raw = client.chat.completions.with_raw_response.create(
            model="cached-mini", messages=PROMPT, temperature=0, stream=True
        )
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, raw.headers.get("x-sluice-cache"), chunks[-1].choices[0].finish_reason

    before = stack.mock_stats()["requests"]
    first, cache, finish = run()
    assert (cache, finish) == ("miss", "stop") and first
    for _ in range(50):  # the answer is stored just after its last byte
        again, cache, finish = run()
        if cache == "hit":
            break
    assert (again, cache, finish) == (first, "hit", "stop")
    assert stack.mock_stats()["requests"] <= before + 50
    hits_before = stack.mock_stats()["requests"]
    assert run()[1] == "hit" and stack.mock_stats()["requests"] == hits_before


def test_chat_streaming_with_include_usage(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1, f"expected exactly one usage chunk, got {len(with_usage)}"
    last = chunks[-1]
    assert last is with_usage[0], "the usage chunk must be the last one"
    assert last.choices == []
    assert full.usage is not None
    assert last.usage.model_dump() == full.usage.model_dump()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather",
              "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["query"]
    # The streamed answer carries the same call, its arguments reassembled from the deltas.
    with client.chat.completions.stream(model="gpt-4o-mini", messages=PROMPT, tools=tools) as s:
        final = s.get_final_completion()
    streamed = final.choices[0].message.tool_calls[0]
    assert (streamed.id, streamed.function.arguments) == (call.id, call.function.arguments)
    # The tool's result goes back; the model answers in words.
    history = PROMPT + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=history, tools=tools,
                                            tool_choice="none")
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


def test_structured_output_parses(client: openai.OpenAI) -> None:
    import pydantic

    class City(pydantic.BaseModel):
        city: str
        population: int

    r = client.chat.completions.parse(model="gpt-4o-mini", messages=PROMPT, response_format=City)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.city and parsed.population == 42


def test_n_choices_streamed(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, n=2)
    assert [c.index for c in whole.choices] == [0, 1]
    texts = ["", ""]
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, n=2, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in whole.choices]


def test_legacy_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model="gpt-4o-mini", prompt="Once upon a time")
    assert r.object == "text_completion"
    assert r.choices[0].text
    assert r.usage is not None
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    chunks = list(client.completions.create(model="gpt-4o-mini", prompt="Once upon a time", stream=True))
    assert chunks
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text


# ---------------------------------------------------------------------------------------------
# Embeddings and models


def test_embeddings(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model="emb", input=["one", "two", "three"])
    assert [d.index for d in r.data] == [0, 1, 2]
    lengths = {len(d.embedding) for d in r.data}
    assert len(lengths) == 1 and lengths.pop() > 0, lengths
    assert all(isinstance(x, float) for d in r.data for x in d.embedding)


def test_models_list(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "rl", "cut", "emb"} <= ids, ids


# ---------------------------------------------------------------------------------------------
# Typed errors


def test_wrong_key_is_authentication_error(stack: Stack) -> None:
    with stack.client(api_key="sk-not-a-key") as bad:
        with pytest.raises(openai.AuthenticationError) as ei:
            bad.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert_openai_error(ei.value, 401, "authentication_error")


def test_bad_field_is_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    err = assert_openai_error(ei.value, 400, "invalid_request_error")
    assert err["param"] == "messages"


def test_malformed_json_is_bad_request(client: openai.OpenAI) -> None:
    # The SDK sends raw bytes through `content=`, so invalid JSON still gets its typed error.
    with pytest.raises(openai.BadRequestError) as ei:
        client.post(
            "/chat/completions",
            cast_to=object,
            content=b'{"model": "gpt-4o-mini", "messages": [',
            options={"headers": {"content-type": "application/json"}},
        )
    assert_openai_error(ei.value, 400, "invalid_request_error")


def test_malformed_json_raw_http(stack: Stack, raw: httpx2.Client) -> None:
    r = raw.post(
        f"{stack.base_url}/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {stack.key}", "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.headers.get("x-request-id")
    assert set(r.json()["error"]) == ERROR_FIELDS


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=PROMPT)
    err = assert_openai_error(ei.value, 404, "invalid_request_error", "model_not_found")
    assert err["param"] == "model"


def test_oversize_body_is_413_before_any_upstream_call(stack: Stack, client: openai.OpenAI) -> None:
    before = stack.mock_stats()["requests"]
    big = "x" * (MAX_BODY_BYTES + 1024)
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": big}])
    assert_openai_error(ei.value, 413, "invalid_request_error")
    assert stack.mock_stats()["requests"] == before, "an oversize body reached the provider"


def test_rate_limited_provider_is_rate_limit_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="rl", messages=PROMPT)
    assert_openai_error(ei.value, 429, "rate_limit_error")
    retry_after = ei.value.response.headers.get("retry-after")
    assert retry_after is not None, "429 without retry-after"
    assert 0 < float(retry_after) <= 120, retry_after  # the SDK gives up beyond 120 s


def test_key_over_its_rpm_is_rate_limit_error(stack: Stack) -> None:
    client = stack.client(api_key=LIMITED_KEY)
    before = stack.mock_stats()["requests"]
    ok = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
    assert ok.headers.get("x-ratelimit-limit-requests") == "1"
    assert ok.headers.get("x-ratelimit-remaining-requests") == "0"
    assert ok.parse().choices[0].message.content
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
    err = assert_openai_error(ei.value, 429, "requests", "rate_limit_exceeded")
    assert "1 requests per minute" in err["message"]
    assert LIMITED_KEY not in json.dumps(err)
    headers = ei.value.response.headers
    assert 0 < float(headers["retry-after"]) <= 60
    assert headers.get("x-ratelimit-remaining-requests") == "0"
    assert stack.mock_stats()["requests"] == before + 1, "the refused request reached the provider"


def test_stream_cut_mid_way_raises_api_error(client: openai.OpenAI, stack: Stack, raw: httpx2.Client) -> None:
    stream = client.chat.completions.create(model="cut", messages=PROMPT, stream=True)
    assert stream.response.status_code == 200
    assert stream.response.headers.get("x-request-id")
    got: list[str] = []
    with pytest.raises(openai.APIError) as ei:
        for chunk in stream:
            if chunk.choices:
                got.append(chunk.choices[0].delta.content or "")
    # The SDK raises the base APIError for an in-stream `{"error": ...}` event.
    assert not isinstance(ei.value, openai.APIStatusError)
    assert ei.value.code == "stream_interrupted", ei.value.body
    assert ei.value.type == "server_error", ei.value.body
    assert ei.value.message
    assert "".join(got), "the first chunks should have arrived before the error"

    # The same stream read whole: the error is its last event and nothing marks it finished.
    r = raw.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "cut", "messages": PROMPT, "stream": True},
        headers={"authorization": f"Bearer {stack.key}"},
    )
    assert r.status_code == 200
    events = [line[len("data: ") :] for line in r.text.split("\n") if line.startswith("data: ")]
    assert "[DONE]" not in events, events
    assert json.loads(events[-1])["error"]["code"] == "stream_interrupted", events


def test_error_bodies_are_json_with_request_id(stack: Stack, raw: httpx2.Client) -> None:
    """Each error status the gateway produces itself, straight over HTTP."""
    auth = {"authorization": f"Bearer {stack.key}", "content-type": "application/json"}
    ok_msg = {"model": "gpt-4o-mini", "messages": PROMPT}
    cases = [
        ({"content-type": "application/json"}, json.dumps(ok_msg), 401),
        (auth, json.dumps({"model": "gpt-4o-mini"}), 400),
        (auth, json.dumps({**ok_msg, "model": "nope"}), 404),
        (auth, json.dumps({**ok_msg, "model": "rl"}), 429),
    ]
    ids = set()
    for headers, body, status in cases:
        r = raw.post(f"{stack.base_url}/chat/completions", content=body.encode(), headers=headers)
        assert r.status_code == status, (status, r.text)
        rid = r.headers.get("x-request-id")
        assert rid, f"{status} without x-request-id"
        ids.add(rid)
        assert set(r.json()["error"]) == ERROR_FIELDS, r.text
    assert len(ids) == len(cases), "request ids must differ"
