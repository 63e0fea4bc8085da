"""The openai SDK through Sluice to another dialect: an OpenAI target that fails (503) falls
over to an Anthropic target (mock-llm speaking the Messages API), streamed and not, with
tools, and the SDK never notices the translation.
"""

from __future__ import annotations

import json

import openai

from conftest import Stack

PROMPT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me something about sluices."},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


def test_failover_to_anthropic_streamed(stack: Stack, client: openai.OpenAI) -> None:
    before = stack.mock_stats()["by_model"].get("claude-mock", 0)
    stream = client.chat.completions.create(
        model="cross", messages=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) >= 8, text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens // 4
    assert stack.mock_stats()["by_model"].get("claude-mock", 0) == before + 1

    whole = client.chat.completions.create(model="cross", messages=PROMPT)
    assert whole.choices[0].message.content == text
    assert whole.choices[0].finish_reason == "stop"


def test_anthropic_tool_calls_stream_through_the_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="cross", messages=PROMPT, tools=TOOLS, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for d in choice.delta.tool_calls or []:
            call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = d.id or call["id"]
            if d.function is not None:
                call["name"] += d.function.name or ""
                call["arguments"] += d.function.arguments or ""
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather"]
    assert json.loads(calls[0]["arguments"])["query"]

    whole = client.chat.completions.create(model="cross", messages=PROMPT, tools=TOOLS)
    call = whole.choices[0].message.tool_calls[0]
    assert call.id == calls[0]["id"]
    assert call.function.arguments == calls[0]["arguments"]
