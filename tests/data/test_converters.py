"""Converters: raw dicts of every supported shape -> SFTRecord / PrefRecord, or ConversionError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from k12tune.data.aliases import merged_aliases
from k12tune.data.converters import ConversionError, to_pref, to_sft
from k12tune.data.normalize import clean_text
from k12tune.records import Origin, PrefRecord, SFTRecord

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ALIASES = merged_aliases({})
EXTENDED = merged_aliases({"prompt": ["ask"], "response": ["reply"]})
ORIGIN = Origin("src", "file.jsonl", 7)


def sys_(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def asst(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def sft(raw: Any, aliases: Any = ALIASES) -> list[dict[str, str]]:
    record = to_sft(raw, ORIGIN, aliases)
    assert isinstance(record, SFTRecord)
    assert record.origin is ORIGIN
    return record.messages


def sft_error(raw: Any, aliases: Any = ALIASES) -> tuple[str, str]:
    with pytest.raises(ConversionError) as info:
        to_sft(raw, ORIGIN, aliases)
    assert str(info.value) == f"{info.value.rule}: {info.value.detail}"
    return info.value.rule, info.value.detail


def pref(raw: Any, aliases: Any = ALIASES) -> PrefRecord:
    record = to_pref(raw, ORIGIN, aliases)
    assert isinstance(record, PrefRecord)
    assert record.origin is ORIGIN
    return record


def pref_error(raw: Any, aliases: Any = ALIASES) -> tuple[str, str]:
    with pytest.raises(ConversionError) as info:
        to_pref(raw, ORIGIN, aliases)
    return info.value.rule, info.value.detail


# --- SFT: alpaca ------------------------------------------------------------------------------


def test_alpaca_instruction_only():
    assert sft({"instruction": "写一首诗", "output": "春眠不觉晓"}) == [
        user("写一首诗"),
        asst("春眠不觉晓"),
    ]


def test_alpaca_instruction_and_input_joined_by_newline():
    raw = {"instruction": "翻译成英文", "input": "你好", "output": "Hello"}
    assert sft(raw) == [user("翻译成英文\n你好"), asst("Hello")]


@pytest.mark.parametrize("empty_input", ["", "   \n ", "\u200b", None])
def test_alpaca_empty_input_ignored(empty_input):
    raw = {"instruction": "解释光合作用", "input": empty_input, "output": "植物利用光能"}
    assert sft(raw) == [user("解释光合作用"), asst("植物利用光能")]


def test_alpaca_with_system():
    raw = {"system": "你是一位老师", "instruction": "1+1=?", "input": "", "output": "2"}
    assert sft(raw) == [sys_("你是一位老师"), user("1+1=?"), asst("2")]


def test_alpaca_empty_system_dropped():
    raw = {"system": "  ", "instruction": "1+1=?", "output": "2"}
    assert sft(raw) == [user("1+1=?"), asst("2")]


def test_alpaca_system_prompt_alias():
    raw = {"system_prompt": "简洁回答", "instruction": "1+1=?", "output": "2"}
    assert sft(raw) == [sys_("简洁回答"), user("1+1=?"), asst("2")]


def test_alpaca_with_history_turns_before_final():
    raw = {
        "system": "老师",
        "instruction": "那 3+3 呢？",
        "input": "请直接回答",
        "output": "6",
        "history": [["1+1=?", "2"], ("2+2=?", "4")],
    }
    assert sft(raw) == [
        sys_("老师"),
        user("1+1=?"),
        asst("2"),
        user("2+2=?"),
        asst("4"),
        user("那 3+3 呢？\n请直接回答"),
        asst("6"),
    ]


def test_alpaca_empty_history_list():
    raw = {"instruction": "q", "output": "a", "history": []}
    assert sft(raw) == [user("q"), asst("a")]


def test_alpaca_bad_history_pair():
    raw = {"instruction": "q", "output": "a", "history": [["only one"]]}
    assert sft_error(raw) == ("wrong_type", "history[0] must be a [question, answer] pair")


def test_alpaca_history_not_a_list():
    raw = {"instruction": "q", "output": "a", "history": "q1 a1"}
    assert sft_error(raw) == ("wrong_type", "history must be a list of [question, answer] pairs")


def test_alpaca_history_empty_answer():
    raw = {"instruction": "q", "output": "a", "history": [["q0", " "]]}
    assert sft_error(raw) == ("empty_text", "history[0][1] is empty")


# --- SFT: prompt/response and aliases -----------------------------------------------------------


def test_prompt_response():
    assert sft({"id": "x-1", "prompt": "问题", "response": "回答"}) == [user("问题"), asst("回答")]


@pytest.mark.parametrize("prompt_key", ["prompt", "question", "query", "instruction"])
@pytest.mark.parametrize("response_key", ["response", "answer", "completion", "output"])
def test_prompt_and_response_aliases(prompt_key, response_key):
    raw = {prompt_key: "Q text", response_key: "A text"}
    assert sft(raw) == [user("Q text"), asst("A text")]


def test_alias_priority_first_listed_wins():
    # `prompt` is tried before `instruction`, `response` before `output`.
    raw = {"instruction": "I", "prompt": "P", "output": "O", "response": "R"}
    assert sft(raw) == [user("P"), asst("R")]


def test_null_alias_value_falls_through_to_next_alias():
    raw = {"prompt": None, "question": "Q", "response": None, "answer": "A"}
    assert sft(raw) == [user("Q"), asst("A")]


def test_config_extended_aliases():
    raw = {"ask": "什么是分数？", "reply": "分数表示部分与整体的关系。"}
    assert sft(raw, EXTENDED) == [user("什么是分数？"), asst("分数表示部分与整体的关系。")]
    # The built-in table does not know these names.
    assert sft_error(raw) == ("unknown_shape", "no SFT fields among keys ['ask', 'reply']")


def test_extended_aliases_keep_builtins_first():
    assert EXTENDED["prompt"] == ("prompt", "question", "query", "instruction", "ask")
    assert EXTENDED["response"] == ("response", "output", "answer", "completion", "reply")
    assert sft({"ask": "A", "query": "Q", "reply": "R"}, EXTENDED) == [user("Q"), asst("R")]


# --- SFT: messages ------------------------------------------------------------------------------


def test_messages_openai_roles_with_system():
    raw = {"messages": [sys_("be brief"), user("hi"), asst("hello")]}
    assert sft(raw) == [sys_("be brief"), user("hi"), asst("hello")]


def test_messages_multi_turn():
    turns = [user("q1"), asst("a1"), user("q2"), asst("a2"), user("q3"), asst("a3")]
    assert sft({"messages": turns}) == turns


def test_messages_content_parts():
    raw = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]},
        ]
    }
    assert sft(raw) == [user("Hello, world"), asst("Hi!")]


def test_messages_non_text_content_part_is_wrong_type():
    raw = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
            asst("a"),
        ]
    }
    assert sft_error(raw) == ("wrong_type", "messages[0].content must be a string, got list")


def test_messages_role_aliases():
    raw = {"messages": [{"role": "user", "content": "q"}, {"role": "model", "content": "a"}]}
    assert sft(raw) == [user("q"), asst("a")]


def test_messages_take_precedence_over_other_shapes():
    raw = {"messages": [user("m-q"), asst("m-a")], "prompt": "p", "response": "r"}
    assert sft(raw) == [user("m-q"), asst("m-a")]


# --- SFT: sharegpt ------------------------------------------------------------------------------


def test_sharegpt_conversations():
    raw = {
        "conversations": [
            {"from": "system", "value": "你是助教"},
            {"from": "human", "value": "q1"},
            {"from": "gpt", "value": "a1"},
            {"from": "human", "value": "q2"},
            {"from": "gpt", "value": "a2"},
        ]
    }
    assert sft(raw) == [sys_("你是助教"), user("q1"), asst("a1"), user("q2"), asst("a2")]


def test_sharegpt_system_field_beside_conversations_goes_first():
    raw = {
        "system": "你是数学老师",
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
    }
    assert sft(raw) == [sys_("你是数学老师"), user("q"), asst("a")]


def test_sharegpt_system_turn_wins_over_system_field():
    raw = {
        "system": "field",
        "conversations": [
            {"from": "system", "value": "turn"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ],
    }
    assert sft(raw) == [sys_("turn"), user("q"), asst("a")]


def test_sharegpt_conversation_alias():
    raw = {"conversation": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    assert sft(raw) == [user("q"), asst("a")]


def test_sharegpt_turn_missing_value():
    raw = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]}
    assert sft_error(raw) == ("missing_field", "conversations[1].value")


# --- text cleaning ------------------------------------------------------------------------------


def test_text_cleaning_applied_to_every_field():
    raw = {
        "system": "\ufeff 系统\r\n提示 ",
        "instruction": "  第一行\r\n第二行\u200b\rend\t",
        "input": "\u200d输\u2060入\x00 ",
        "output": "\n\n答\u200c案\r\n\n",
        "history": [[" \u200bq\r\nx ", "a\x7f "]],
    }
    assert sft(raw) == [
        sys_("系统\n提示"),
        user("q\nx"),
        asst("a"),
        user("第一行\n第二行\nend\n输入"),
        asst("答案"),
    ]


def test_cleaning_keeps_full_width_punctuation_and_inner_whitespace():
    raw = {"messages": [user("你好，  世界！\n\t缩进"), asst("ｏｋ。")]}
    assert sft(raw) == [user("你好，  世界！\n\t缩进"), asst("ｏｋ。")]


# --- SFT errors ---------------------------------------------------------------------------------


def test_not_an_object():
    assert sft_error([{"prompt": "q", "response": "a"}]) == (
        "not_an_object",
        "record is a JSON list, expected an object",
    )
    assert sft_error("text") == ("not_an_object", "record is a JSON str, expected an object")


def test_unknown_shape():
    assert sft_error({"title": "x", "body": "y", "tools": "[]"}) == (
        "unknown_shape",
        "no SFT fields among keys ['body', 'title', 'tools']",
    )


def test_missing_response():
    assert sft_error({"prompt": "q"}) == (
        "missing_field",
        "response (tried response, output, answer, completion)",
    )


def test_missing_response_lists_extended_aliases():
    assert sft_error({"ask": "q"}, EXTENDED) == (
        "missing_field",
        "response (tried response, output, answer, completion, reply)",
    )


def test_missing_prompt():
    assert sft_error({"output": "a", "input": "ctx"}) == (
        "missing_field",
        "prompt (tried prompt, question, query, instruction)",
    )


def test_wrong_type_int_content():
    raw = {"messages": [{"role": "user", "content": 42}, asst("a")]}
    assert sft_error(raw) == ("wrong_type", "messages[0].content must be a string, got int")


def test_wrong_type_int_response():
    assert sft_error({"prompt": "q", "response": 3}) == (
        "wrong_type",
        "response must be a string, got int",
    )


def test_wrong_type_turn_not_object():
    raw = {"conversations": ["hello", {"from": "gpt", "value": "a"}]}
    assert sft_error(raw) == ("wrong_type", "conversations[0] must be an object, got str")


def test_wrong_type_messages_not_list():
    assert sft_error({"messages": "hi"}) == (
        "wrong_type",
        "messages must be a list of turns, got str",
    )


def test_empty_text_after_cleaning():
    assert sft_error({"prompt": " \u200b\r\n ", "response": "a"}) == (
        "empty_text",
        "prompt is empty",
    )


def test_empty_assistant_turn():
    raw = {"messages": [user("q"), {"role": "assistant", "content": "\u200b"}]}
    assert sft_error(raw) == ("empty_text", "messages[1].content is empty")


def test_empty_turn_list():
    assert sft_error({"messages": []}) == ("empty_text", "messages has no turns")


@pytest.mark.parametrize("role", ["function_call", "observation", "tool"])
def test_unsupported_role(role):
    raw = {
        "conversations": [
            {"from": "human", "value": "q"},
            {"from": role, "value": "{}"},
            {"from": "gpt", "value": "a"},
        ]
    }
    assert sft_error(raw) == ("unsupported_role", f"conversations[1].from = {role!r}")


def test_unsupported_openai_tool_role():
    raw = {"messages": [user("q"), {"role": "tool", "content": "{}"}, asst("a")]}
    assert sft_error(raw) == ("unsupported_role", "messages[1].role = 'tool'")


def test_bad_turn_order_assistant_first():
    raw = {"messages": [asst("a"), user("q")]}
    assert sft_error(raw) == ("bad_turn_order", "conversation: turn 1 is assistant, expected user")


def test_bad_turn_order_two_users():
    raw = {"messages": [sys_("s"), user("q1"), user("q2"), asst("a")]}
    assert sft_error(raw) == ("bad_turn_order", "conversation: turn 2 is user, expected assistant")


def test_bad_turn_order_ends_with_user():
    raw = {
        "conversations": [
            {"from": "human", "value": "q1"},
            {"from": "gpt", "value": "a1"},
            {"from": "human", "value": "q2"},
        ]
    }
    assert sft_error(raw) == ("bad_turn_order", "conversation ends with user, expected assistant")


def test_bad_turn_order_system_only():
    assert sft_error({"messages": [sys_("s")]}) == (
        "bad_turn_order",
        "conversation has no user turn",
    )


def test_bad_turn_order_system_in_the_middle():
    raw = {"messages": [user("q"), asst("a"), sys_("s"), asst("b")]}
    assert sft_error(raw) == ("bad_turn_order", "conversation: turn 3 is system, expected user")


# --- preference ---------------------------------------------------------------------------------


def test_pref_prompt_chosen_rejected_strings():
    rec = pref({"prompt": " 问题\r\n", "chosen": "好答案", "rejected": "坏答案"})
    assert rec.prompt == [user("问题")]
    assert rec.chosen == [asst("好答案")]
    assert rec.rejected == [asst("坏答案")]


def test_pref_chosen_rejected_message_lists_with_prompt():
    raw = {"prompt": "q", "chosen": [asst("good")], "rejected": [asst("bad")]}
    rec = pref(raw)
    assert (rec.prompt, rec.chosen, rec.rejected) == ([user("q")], [asst("good")], [asst("bad")])


def test_pref_trl_implicit_prompt():
    raw = {
        "chosen": [sys_("s"), user("q1"), asst("a1"), user("q2"), asst("good")],
        "rejected": [sys_("s"), user("q1"), asst("a1"), user("q2"), asst("bad")],
    }
    rec = pref(raw)
    assert rec.prompt == [sys_("s"), user("q1"), asst("a1"), user("q2")]
    assert rec.chosen == [asst("good")]
    assert rec.rejected == [asst("bad")]


def test_pref_trl_implicit_prompt_mismatch():
    raw = {"chosen": [user("q1"), asst("good")], "rejected": [user("q2"), asst("bad")]}
    assert pref_error(raw) == (
        "bad_turn_order",
        "chosen and rejected carry different implicit prompts",
    )


def test_pref_no_prompt_anywhere():
    assert pref_error({"chosen": "good", "rejected": "bad"}) == (
        "missing_field",
        "prompt (tried prompt, question, query, instruction, conversations)",
    )


def test_pref_answer_list_not_ending_with_assistant():
    raw = {"prompt": "q", "chosen": [user("q"), asst("a"), user("again")], "rejected": "b"}
    assert pref_error(raw) == (
        "bad_turn_order",
        "chosen: the answer turn is user, expected assistant",
    )


def test_pref_sharegpt_dpo_en_zh_shape():
    raw = {
        "conversations": [
            {"from": "system", "value": "你是一个乐于助人的助手。"},
            {"from": "human", "value": "q1"},
            {"from": "gpt", "value": "a1"},
            {"from": "human", "value": "q2"},
        ],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    rec = pref(raw)
    assert rec.prompt == [sys_("你是一个乐于助人的助手。"), user("q1"), asst("a1"), user("q2")]
    assert rec.chosen == [asst("good")]
    assert rec.rejected == [asst("bad")]


def test_pref_sharegpt_system_field_beside_conversations():
    raw = {
        "system": "sys",
        "conversations": [{"from": "human", "value": "q"}],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    assert pref(raw).prompt == [sys_("sys"), user("q")]


def test_pref_answer_dict_with_human_role():
    raw = {
        "conversations": [{"from": "human", "value": "q"}],
        "chosen": {"from": "human", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    assert pref_error(raw) == (
        "bad_turn_order",
        "chosen: the answer turn is user, expected assistant",
    )


@pytest.mark.parametrize(
    ("chosen_key", "rejected_key"),
    [
        ("chosen_response", "rejected_response"),
        ("response_chosen", "response_rejected"),
        ("chosen", "response_rejected"),
        ("chosen_response", "rejected"),
    ],
)
def test_pref_answer_aliases(chosen_key, rejected_key):
    rec = pref({"question": "q", chosen_key: "good", rejected_key: "bad"})
    assert (rec.prompt, rec.chosen, rec.rejected) == ([user("q")], [asst("good")], [asst("bad")])


def test_pref_instruction_input_system_history():
    raw = {
        "system": "s",
        "instruction": "翻译",
        "input": "苹果",
        "history": [["hi", "hello"]],
        "chosen": "apple",
        "rejected": "pear",
    }
    rec = pref(raw)
    assert rec.prompt == [sys_("s"), user("hi"), asst("hello"), user("翻译\n苹果")]
    assert rec.chosen == [asst("apple")]
    assert rec.rejected == [asst("pear")]


def test_pref_extended_prompt_alias():
    rec = pref({"ask": "q", "chosen": "good", "rejected": "bad"}, EXTENDED)
    assert rec.prompt == [user("q")]


def test_pref_missing_chosen():
    assert pref_error({"prompt": "q", "rejected": "bad"}) == (
        "missing_field",
        "chosen (tried chosen, chosen_response, response_chosen)",
    )


def test_pref_missing_rejected():
    assert pref_error({"prompt": "q", "chosen": "good"}) == (
        "missing_field",
        "rejected (tried rejected, rejected_response, response_rejected)",
    )


def test_pref_prompt_ending_with_assistant():
    raw = {
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    assert pref_error(raw) == ("bad_turn_order", "prompt ends with assistant, expected user")


def test_pref_prompt_starting_with_assistant():
    raw = {"messages": [asst("a"), user("q")], "chosen": "good", "rejected": "bad"}
    assert pref_error(raw) == ("bad_turn_order", "prompt: turn 1 is assistant, expected user")


def test_pref_not_an_object():
    assert pref_error(["q", "good", "bad"]) == (
        "not_an_object",
        "record is a JSON list, expected an object",
    )


def test_pref_empty_chosen():
    assert pref_error({"prompt": "q", "chosen": "\u200b ", "rejected": "bad"}) == (
        "empty_text",
        "chosen is empty",
    )


def test_pref_chosen_wrong_type():
    assert pref_error({"prompt": "q", "chosen": 1, "rejected": "bad"}) == (
        "wrong_type",
        "chosen must be a list of turns, got int",
    )


# --- real data ----------------------------------------------------------------------------------


def _load(rel: str) -> list[Any]:
    with open(DATA / rel, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("name", ["dpo_zh_demo.json", "dpo_en_demo.json"])
def test_real_dpo_files_all_convert(name):
    rows = _load(f"pref/{name}")
    records = [to_pref(row, Origin("dpo", name, i), ALIASES) for i, row in enumerate(rows, 1)]
    assert len(records) == 240
    # Expected system-prompt count from the raw data: a `system` turn first in conversations.
    with_system = sum(row["conversations"][0]["from"] == "system" for row in rows)
    assert sum(rec.prompt[0]["role"] == "system" for rec in records) == with_system
    for row, rec in zip(rows, records, strict=True):
        assert rec.prompt[-1]["role"] == "user"
        assert len(rec.prompt) == len(row["conversations"])
        assert rec.chosen == [asst(clean_text(row["chosen"]["value"]))]
        assert rec.rejected == [asst(clean_text(row["rejected"]["value"]))]
        assert [m["role"] for m in rec.prompt] == [
            {"system": "system", "human": "user", "gpt": "assistant"}[t["from"]] for t in row["conversations"]
        ]


def test_real_dpo_zh_has_53_system_prompts():
    rows = _load("pref/dpo_zh_demo.json")
    records = [to_pref(row, ORIGIN, ALIASES) for row in rows]
    assert sum(rec.prompt[0]["role"] == "system" for rec in records) == 53


def test_real_glaive_toolcall_converts_or_rejects_unsupported_role():
    rows = _load("sft/glaive_toolcall_zh_demo.json")
    assert len(rows) == 50
    # 29 records contain function_call/observation turns; 21 are plain human/gpt chats.
    converted, rejected = 0, 0
    for row in rows:
        froms = [turn["from"] for turn in row["conversations"]]
        tool_call = any(f not in {"human", "gpt", "system"} for f in froms)
        if tool_call:
            with pytest.raises(ConversionError) as info:
                to_sft(row, ORIGIN, ALIASES)
            assert info.value.rule == "unsupported_role"
            first_bad = next(i for i, f in enumerate(froms) if f not in {"human", "gpt", "system"})
            assert info.value.detail == f"conversations[{first_bad}].from = {froms[first_bad]!r}"
            rejected += 1
        else:
            messages = to_sft(row, ORIGIN, ALIASES).messages
            assert len(messages) == len(froms)
            converted += 1
    assert (converted, rejected) == (21, 29)
    assert converted + rejected == 50
