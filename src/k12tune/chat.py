"""`k12tune chat --adapter outputs/align`: talk to the trained model, token by token.

The model is the one the adapter folder was trained as (`stack.resolve_stack`: an alignment
adapter trained on a merged SFT adapter brings that SFT adapter along), prompted through the
tokenizer saved beside the adapter, so its chat template is the one training used. Without a
system prompt Qwen2.5's template injects "You are Qwen, created by Alibaba Cloud ..."; a K12
teacher prompt is sent instead unless `--system ''` asks for the template's own default.

Interactive when no `--prompt` is given: the conversation is kept turn after turn (`/reset`
starts over, `/exit` or end of input leaves). With `--prompt` it answers once and exits.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from k12tune.errors import K12TuneError

TEACHER_SYSTEM_PROMPT = (
    "你是一位耐心、严谨的中小学老师。请用学生能听懂的语言分步骤讲解，必要时举例；"
    "数学题先列式再计算，最后检查答案；不确定的内容要如实说明。"
)
END_OF_TURN = "<|im_end|>"


@dataclass
class Conversation:
    """The messages so far; the system prompt (if any) stays first across `/reset`."""

    system: str | None
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="k12tune chat",
        description="Answer from a base model plus a trained adapter, streaming tokens as they come. "
        "Without --prompt: an interactive session (/reset clears the history, /exit or Ctrl-D leaves).",
    )
    parser.add_argument(
        "--adapter",
        default="outputs/align",
        help="A finished train_sft/train_dpo/train_orpo output folder, or 'none' for the bare base "
        "(default: outputs/align). Its base, and any SFT adapter it was trained on, are loaded with it.",
    )
    parser.add_argument(
        "--base",
        default=None,
        help="The base model, only with --adapter none (with an adapter, the base it was trained on "
        "is used).",
    )
    parser.add_argument("--prompt", default=None, help="Answer this one question and exit.")
    parser.add_argument(
        "--system",
        default=TEACHER_SYSTEM_PROMPT,
        help="System prompt (default: a K12 teacher prompt); '' sends none, so the chat template's "
        "own default applies.",
    )
    parser.add_argument("--max-new-tokens", type=int, default=512, help="Longest answer, in tokens.")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.7,
        help="Sampling temperature; 0 decodes greedily (the same answer every time).",
    )
    parser.add_argument("--top-p", type=float, default=0.8, help="Nucleus sampling mass (Qwen2.5's default).")
    parser.add_argument(
        "--repetition-penalty", type=float, default=1.05, help="Qwen2.5's default repetition penalty."
    )
    parser.add_argument("--seed", type=int, default=None, help="Seed for sampling (default: random).")
    parser.add_argument("--device", default="auto", help="auto (cuda if any, else cpu), cpu, cuda, cuda:1.")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="Weights' dtype; auto: bf16 on a GPU that has it, else float32. A 4-bit (QLoRA) adapter "
        "loads its base in 4 bits as it was trained.",
    )
    return parser


def load_chat_model(adapter: str, base: str | None, dtype_name: str, device_name: str) -> tuple[Any, Any]:
    """(model, tokenizer) for `adapter`, or the bare `base` with adapter 'none'."""
    from k12tune.config.train import ModelConfig
    from k12tune.errors import ConfigError
    from k12tune.stack import (
        Stack,
        default_device,
        load_stack,
        load_stack_tokenizer,
        resolve_stack,
        torch_dtype,
    )

    if adapter == "none":
        if not base:
            raise ConfigError("--adapter none needs --base (the model to chat with)")
        stack = Stack(ModelConfig(base=base))
    else:
        if base:
            raise ConfigError("--base only applies with --adapter none: an adapter runs on its own base")
        stack = resolve_stack(adapter)
    device = default_device(device_name)
    model = load_stack(stack, torch_dtype(dtype_name, device), device, merge=not stack.trained_4bit)
    return model, load_stack_tokenizer(stack)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """End of turn and end of text: a model may close its answer with either."""
    ids = {tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.eos_token_id, tokenizer.pad_token_id}
    return sorted(i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id)


def make_streamer(tokenizer: Any, out: TextIO) -> Any:
    """A transformers `TextStreamer` writing the answer's text to `out` as tokens arrive (whole
    words and characters only: it holds back bytes of an unfinished multi-byte character)."""
    from transformers import TextStreamer

    class StreamTo(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return StreamTo(tokenizer, skip_prompt=True, skip_special_tokens=True)


def encode(tokenizer: Any, conversation: Conversation) -> Any:
    """The conversation through the chat template, ending with the assistant's header."""
    return tokenizer.apply_chat_template(
        conversation.messages(), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def answer(
    model: Any, tokenizer: Any, conversation: Conversation, args: argparse.Namespace, out: TextIO
) -> str:
    """Stream the assistant's next turn to `out`, add it to the conversation, and return it."""
    import torch

    inputs = encode(tokenizer, conversation).to(model.device)
    sampling = (
        {"do_sample": True, "temperature": args.temperature, "top_p": args.top_p}
        if args.temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=args.max_new_tokens,
            repetition_penalty=args.repetition_penalty,
            eos_token_id=stop_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            streamer=make_streamer(tokenizer, out),
            **sampling,
        )
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    conversation.turns.append({"role": "assistant", "content": reply})
    return reply


def interact(
    model: Any,
    tokenizer: Any,
    conversation: Conversation,
    args: argparse.Namespace,
    stdin: TextIO,
    out: TextIO,
) -> None:
    out.write("k12tune chat: type a question; /reset clears the conversation, /exit leaves.\n")
    while True:
        out.write("\n你: ")
        out.flush()
        line = stdin.readline()
        if not line:  # end of input
            out.write("\n")
            return
        text = line.strip()
        if text in {"/exit", "/quit"}:
            return
        if text == "/reset":
            conversation.turns.clear()
            out.write("(conversation cleared)\n")
            continue
        if not text:
            continue
        conversation.turns.append({"role": "user", "content": text})
        out.write("老师: ")
        answer(model, tokenizer, conversation, args, out)


def main(argv: list[str] | None = None, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    stdin, out = stdin or sys.stdin, out or sys.stdout
    try:
        if args.max_new_tokens < 1:
            raise K12TuneError("--max-new-tokens must be at least 1")
        if args.seed is not None:
            from transformers import set_seed

            set_seed(args.seed)
        print(f"chat: loading {args.adapter if args.adapter != 'none' else args.base} ...", file=sys.stderr)
        model, tokenizer = load_chat_model(args.adapter, args.base, args.dtype, args.device)
        conversation = Conversation(system=args.system or None)
        if args.prompt is not None:
            conversation.turns.append({"role": "user", "content": args.prompt})
            answer(model, tokenizer, conversation, args, out)
        else:
            interact(model, tokenizer, conversation, args, stdin, out)
        return 0
    except K12TuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
