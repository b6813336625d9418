"""`k12tune chat` on the tiny base with real trained adapters: streamed, greedy answers from
base + adapter through the chat template, the K12 system prompt by default, and a session."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from k12tune import chat
from k12tune.cli import main as cli_main
from k12tune.stack import load_stack_tokenizer, resolve_stack
from tests.train.conftest import MEMORISABLE


class Recorder(io.StringIO):
    """A text stream that remembers every write, to see the answer arrive piece by piece."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def one_shot(adapter: str, *extra: str) -> tuple[int, Recorder]:
    out = Recorder()
    argv = ["--adapter", adapter, "--temperature", "0", "--max-new-tokens", "24", "--device", "cpu", *extra]
    return chat.main(argv, stdin=io.StringIO(), out=out), out


def test_one_shot_streams_the_memorised_answer_of_the_sft_adapter(trained_adapters: dict[str, Path]) -> None:
    question, expected = MEMORISABLE[0]
    # Trained without a system prompt, i.e. with the template's default: ask the same way.
    code, out = one_shot(str(trained_adapters["sft"]), "--prompt", question, "--system", "")
    assert code == 0
    assert out.getvalue() == expected + "\n"
    assert len([w for w in out.writes if w.strip()]) > 1  # streamed, not printed at the end


def test_the_adapter_is_applied(trained_adapters: dict[str, Path], tiny_base: Path) -> None:
    question, expected = MEMORISABLE[0]
    code, out = one_shot("none", "--base", str(tiny_base), "--prompt", question, "--system", "")
    assert code == 0
    assert out.getvalue() != expected + "\n"


def test_teacher_system_prompt_by_default(trained_adapters: dict[str, Path]) -> None:
    tokenizer = load_stack_tokenizer(resolve_stack(trained_adapters["align"]))
    default = chat.Conversation(system=chat.build_parser().parse_args([]).system)
    default.turns.append({"role": "user", "content": "什么是分数？"})
    text = tokenizer.decode(chat.encode(tokenizer, default)["input_ids"][0])
    assert text.startswith(f"<|im_start|>system\n{chat.TEACHER_SYSTEM_PROMPT}<|im_end|>\n")
    assert text.endswith("<|im_start|>user\n什么是分数？<|im_end|>\n<|im_start|>assistant\n")
    bare = chat.Conversation(system=None, turns=default.turns)
    bare_text = tokenizer.decode(chat.encode(tokenizer, bare)["input_ids"][0])
    assert bare_text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud")


def test_interactive_session_keeps_history_and_resets(trained_adapters: dict[str, Path]) -> None:
    model, tokenizer = chat.load_chat_model(str(trained_adapters["sft"]), None, "float32", "cpu")
    args = chat.build_parser().parse_args(["--temperature", "0", "--max-new-tokens", "8"])
    conversation = chat.Conversation(system=None)
    script = f"{MEMORISABLE[0][0]}\n{MEMORISABLE[1][0]}\n/reset\n\n{MEMORISABLE[2][0]}\n"
    out = io.StringIO()
    chat.interact(model, tokenizer, conversation, args, io.StringIO(script), out)
    assert out.getvalue().count("老师: ") == 3
    assert "(conversation cleared)" in out.getvalue()
    # After the reset only the last question and its answer remain; end of input ended the loop.
    assert [t["role"] for t in conversation.turns] == ["user", "assistant"]
    assert conversation.turns[0]["content"] == MEMORISABLE[2][0]
    stopped = chat.Conversation(system=None)
    chat.interact(model, tokenizer, stopped, args, io.StringIO("/exit\n一加一等于几？\n"), io.StringIO())
    assert stopped.turns == []


def test_console_command_and_errors(
    trained_adapters: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["chat", "--adapter", "none"]) == 2
    assert "--adapter none needs --base" in capsys.readouterr().err
    assert cli_main(["chat", "--adapter", str(tmp_path)]) == 2
    assert f"{tmp_path} holds no adapter" in capsys.readouterr().err
    assert cli_main(["chat", "--adapter", str(trained_adapters["sft"]), "--base", "x"]) == 2
    assert "--base only applies with --adapter none" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["chat", "--help"])
    assert exit_info.value.code == 0
    assert "K12 teacher prompt" in capsys.readouterr().out
