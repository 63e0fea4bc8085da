"""The official anthropic SDK through Sluice's Messages face: messages.create, messages.stream
with a tool round trip and count_tokens, against an Anthropic-kind target (mock-llm speaking
the Messages API) and OpenAI-dialect targets (OpenAI and Azure OpenAI kinds), the SDK never
noticing that Sluice serves them through its chat exchange.
"""

from __future__ import annotations

from typing import Iterator

import anthropic
import pytest

from conftest import Stack

SYSTEM = "Be brief."
PROMPT = [{"role": "user", "content": "Tell me something about sluices."}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather for a place.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }
]
# An Anthropic-kind target, an OpenAI-kind one, and Azure OpenAI (chat's dialect, with tool calls).
TARGETS = ["claude-up", "gpt-4o-mini", "azure-up"]
TOOL_TARGETS = ["claude-up", "gpt-4o-mini", "azure-up"]


def make_client(stack: Stack, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{stack.port}",
        max_retries=0,
        timeout=10,
        http_client=anthropic.DefaultHttpxClient(transport=_transport(stack), trust_env=False),
        **kw,
    )


def _transport(stack: Stack):
    # The conftest's recording transport, so the canary check sees these responses too.
    from conftest import TeeTransport

    return TeeTransport(stack.responses)


@pytest.fixture(scope="module")
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    c = make_client(stack, api_key=stack.key)
    yield c
    c.close()


@pytest.mark.parametrize("model", TARGETS)
def test_messages_create(claude: anthropic.Anthropic, model: str) -> None:
    msg = claude.messages.create(model=model, max_tokens=200, system=SYSTEM, messages=PROMPT)
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text"
    assert len(msg.content[0].text.split()) >= 8, msg
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.usage.cache_read_input_tokens is not None


@pytest.mark.parametrize("model", TARGETS)
def test_messages_stream_matches_create(claude: anthropic.Anthropic, model: str) -> None:
    whole = claude.messages.create(model=model, max_tokens=200, system=SYSTEM, messages=PROMPT)
    with claude.messages.stream(model=model, max_tokens=200, system=SYSTEM, messages=PROMPT) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


@pytest.mark.parametrize("model", TOOL_TARGETS)
def test_messages_stream_with_a_tool_round_trip(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(model=model, max_tokens=200, messages=PROMPT, tools=TOOLS) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use", final
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather"]
    assert isinstance(calls[0].input, dict) and calls[0].input["query"]

    whole = claude.messages.create(model=model, max_tokens=200, messages=PROMPT, tools=TOOLS)
    assert [b.input for b in whole.content if b.type == "tool_use"] == [calls[0].input]

    answer = claude.messages.create(
        model=model,
        max_tokens=200,
        tools=TOOLS,
        tool_choice={"type": "none"},
        messages=[
            *PROMPT,
            {"role": "assistant", "content": final.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny, 21C"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].type == "text" and answer.content[0].text


@pytest.mark.parametrize("model", ["claude-up", "gpt-4o-mini"])
def test_count_tokens(claude: anthropic.Anthropic, stack: Stack, model: str) -> None:
    before = stack.mock_stats()["requests"]
    small = claude.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
    large = claude.messages.count_tokens(model=model, system=SYSTEM, messages=PROMPT, tools=TOOLS)
    assert 0 < small.input_tokens < large.input_tokens
    assert stack.mock_stats()["requests"] == before, "counted locally, no provider call"


def test_bearer_auth_as_claude_code_sends_it(stack: Stack) -> None:
    c = make_client(stack, auth_token=stack.key)
    try:
        msg = c.messages.create(model="claude-up", max_tokens=50, messages=PROMPT)
        assert msg.content[0].text
    finally:
        c.close()


def test_errors_raise_the_sdk_exceptions(stack: Stack, claude: anthropic.Anthropic) -> None:
    bad = make_client(stack, api_key="sk-not-a-sluice-key")
    try:
        with pytest.raises(anthropic.AuthenticationError):
            bad.messages.create(model="claude-up", max_tokens=5, messages=PROMPT)
    finally:
        bad.close()
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=5, messages=PROMPT)
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="claude-up", max_tokens=5, messages=PROMPT, extra_body={"top_k": 3})
    assert "top_k" in str(e.value)


def test_a_cut_stream_raises_in_the_sdk(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as e:
        with claude.messages.stream(model="cut", max_tokens=200, messages=PROMPT) as stream:
            for _ in stream:
                pass
    assert "broke off" in str(e.value)
