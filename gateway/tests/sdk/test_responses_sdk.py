"""The official openai SDK's Responses API through Sluice: `responses.create` plain and
streamed, `responses.stream`, a function tool round trip, failover across providers, a cut
stream, and the refusals, against an OpenAI-kind target (mock-llm's OpenAI API), an
Anthropic-kind target (mock-llm speaking the Messages API) and Azure OpenAI (chat's dialect,
which mock-llm answers with tool calls). The OpenAI-kind target gets the client's own body at
mock-llm's `/v1/responses` and its answer passes through (so a built-in tool such as
`web_search` works there); the others are translated through Sluice's chat exchange.
"""

from __future__ import annotations

import json

import openai
import pytest

INSTRUCTIONS = "Be brief."
PROMPT = "Tell me something about sluices."
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather for a place.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }
]
TARGETS = ["gpt-4o-mini", "claude-up"]
# mock-llm's plain OpenAI API answers in text only; its Azure dialect makes tool calls.
TOOL_TARGETS = ["gpt-4o-mini", "azure-up", "claude-up"]


def check_sequence(events: list) -> None:
    """`sequence_number` counts 0, 1, 2, … with no gap, created first, one terminal event."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[1].type == "response.in_progress"
    assert events[0].response.id.startswith("resp_")
    assert all(getattr(e, "response", events[0].response).id == events[0].response.id for e in events)


@pytest.mark.parametrize("model", TARGETS)
def test_create_plain_and_streamed(client: openai.OpenAI, model: str) -> None:
    whole = client.responses.create(model=model, instructions=INSTRUCTIONS, input=PROMPT, max_output_tokens=300)
    assert whole.object == "response"
    assert whole.status == "completed"
    assert whole.id.startswith("resp_")
    text = whole.output_text
    assert len(text.split()) >= 8, text
    assert whole.output[0].type == "message"
    assert whole.usage is not None
    assert whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0
    assert whole.usage.total_tokens == whole.usage.input_tokens + whole.usage.output_tokens
    assert whole.instructions == INSTRUCTIONS
    assert whole.max_output_tokens == 300

    events = list(
        client.responses.create(
            model=model, instructions=INSTRUCTIONS, input=PROMPT, max_output_tokens=300, stream=True
        )
    )
    check_sequence(events)
    types = [e.type for e in events]
    assert types[-1] == "response.completed", types
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ], types
    assert set(types[4:-4]) == {"response.output_text.delta"}, types
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == text
    done = [e for e in events if e.type == "response.output_text.done"]
    assert [d.text for d in done] == [text]
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == text
    assert final.usage is not None and final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


@pytest.mark.parametrize("model", TARGETS)
def test_stream_helper_gives_the_final_response(client: openai.OpenAI, model: str) -> None:
    deltas = []
    with client.responses.stream(model=model, instructions=INSTRUCTIONS, input=PROMPT) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "".join(deltas)
    assert len(final.output_text.split()) >= 8


@pytest.mark.parametrize("model", TOOL_TARGETS)
def test_function_tool_round_trip(client: openai.OpenAI, model: str) -> None:
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model=model, input=question, tools=TOOLS)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather"
    args = json.loads(call.arguments)
    assert isinstance(args["query"], str)

    # Streamed, the arguments reassemble to the same call.
    with client.responses.stream(model=model, input=question, tools=TOOLS) as stream:
        arg_deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    streamed_calls = [o for o in final.output if o.type == "function_call"]
    assert len(streamed_calls) == 1
    assert json.loads("".join(arg_deltas)) == args
    assert json.loads(streamed_calls[0].arguments) == args

    # The SDK's own pattern: the output goes back as input, with the call's result.
    follow_up = question + first.output + [
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}
    ]
    second = client.responses.create(model=model, input=follow_up, tools=TOOLS, tool_choice="none")
    assert second.status == "completed"
    assert [o.type for o in second.output] == ["message"]
    assert second.output_text


def test_failover_from_openai_to_anthropic(stack, client: openai.OpenAI) -> None:
    before = stack.mock_stats()["by_model"].get("claude-mock", 0)
    whole = client.responses.create(model="cross", input=PROMPT)
    assert whole.status == "completed" and whole.output_text
    events = list(client.responses.create(model="cross", input=PROMPT, stream=True))
    check_sequence(events)
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == whole.output_text
    assert stack.mock_stats()["by_model"].get("claude-mock", 0) == before + 2


def test_a_cut_stream_ends_with_the_error_event(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="cut", input=PROMPT, stream=True))
    check_sequence(events)
    assert [e.type for e in events[-2:]] == ["response.failed", "error"]
    assert events[-2].response.status == "failed"
    assert events[-1].code == "stream_interrupted"
    assert "broke off" in events[-1].message
    assert any(e.type == "response.output_text.delta" for e in events)


def test_openai_targets_pass_through_with_a_built_in_tool(stack, client: openai.OpenAI) -> None:
    def to_responses() -> int:
        return stack.mock_stats().get("by_path", {}).get("/v1/responses", 0)

    before = to_responses()
    web = [{"type": "web_search"}]
    whole = client.responses.create(model="gpt-4o-mini", input=PROMPT, tools=web)
    assert [o.type for o in whole.output] == ["message", "web_search_call"]
    assert whole.output[1].status == "completed"
    assert whole.output_text

    with client.responses.stream(model="gpt-4o-mini", input=PROMPT, tools=web) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_sequence(events)
    assert "response.web_search_call.completed" in [e.type for e in events]
    assert [o.type for o in final.output] == ["message", "web_search_call"]
    assert final.output_text == whole.output_text
    assert to_responses() == before + 2


@pytest.mark.parametrize(
    "model, extra, needle, param",
    [
        # Built-in tools run only on OpenAI-kind targets.
        ("claude-up", {"tools": [{"type": "web_search"}]}, "web_search", "tools"),
        ("claude-up", {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "file_search", "tools"),
        ("azure-up", {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "code_interpreter", "tools"),
        ("gpt-4o-mini", {"store": True}, "store", "store"),
        ("gpt-4o-mini", {"previous_response_id": "resp_123"}, "previous_response_id", "previous_response_id"),
    ],
)
def test_refusals_are_clear_400s(client: openai.OpenAI, model: str, extra: dict, needle: str, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input=PROMPT, **extra)
    assert err.value.status_code == 400
    assert needle in err.value.message
    assert err.value.type == "invalid_request_error"
    assert err.value.param == param
