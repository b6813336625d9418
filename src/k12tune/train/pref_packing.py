"""Padding-free preference batches, shared by `K12DPOTrainer` and `K12ORPOTrainer`.

A padded preference batch is as wide as its longest sequence, so pairs of very different lengths
spend most of their compute on pad tokens. Here a batch's sequences (all chosen, then all
rejected: the order of TRL's padded batch) are laid end to end in ONE row with no pad at all.
The sequences stay apart through `position_ids` restarting at 0: with no attention mask,
transformers reads them as packed sequences and builds a block-diagonal causal mask (sdpa,
eager), and flash-attention takes the `cu_seq_lens_*` / `max_length_*` keys, as TRL's SFT
collator emits them. TRL 1.16's own DPO `padding_free` is a no-op (huggingface/trl#7014).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import torch

__all__ = ["PackedPairs", "is_packed", "pack", "packed_logps"]

# What the model's forward takes; `seq_idx` and `completion_mask` are ours.
MODEL_KEYS = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
REF_KEYS = ("ref_chosen_logps", "ref_rejected_logps")


def pack(sequences: list[list[int]], masks: list[list[int]]) -> dict[str, Any]:
    """One (1, T) row from `sequences`; `masks` is 1 on the answer tokens."""
    lengths = [len(s) for s in sequences]
    cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32)
    width = int(max(lengths))
    return {
        "input_ids": torch.tensor(list(itertools.chain.from_iterable(sequences)))[None],
        "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        "completion_mask": torch.tensor(list(itertools.chain.from_iterable(masks)), dtype=torch.long)[None],
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": width,
        "max_length_k": width,
        "seq_idx": torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32), cu.diff())[None],
    }


@dataclass
class PackedPairs:
    """Collator. `dpo` reads TRL DPO's `prompt_ids` / `chosen_ids` / `rejected_ids` and truncates
    each sequence as `DataCollatorForPreference` does; `orpo` reads the ORPO trainer's
    `chosen_input_ids` / `chosen_labels` (already truncated at tokenisation, prompt labels -100)."""

    source: Literal["dpo", "orpo"]
    max_length: int | None = None
    truncation_mode: Literal["keep_start", "keep_end"] = "keep_start"

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        sequences, masks = [], []
        for side in ("chosen", "rejected"):
            for ex in examples:
                if self.source == "orpo":
                    sequences.append(list(ex[f"{side}_input_ids"]))
                    masks.append([int(label != -100) for label in ex[f"{side}_labels"]])
                    continue
                prompt, answer = ex["prompt_ids"], ex[f"{side}_ids"]
                ids, mask = prompt + answer, [0] * len(prompt) + [1] * len(answer)
                if self.max_length is not None:
                    keep = (
                        slice(None, self.max_length)
                        if self.truncation_mode == "keep_start"
                        else slice(-self.max_length, None)
                    )
                    ids, mask = ids[keep], mask[keep]
                sequences.append(ids)
                masks.append(mask)
        batch = pack(sequences, masks)
        for key in REF_KEYS:
            if key in examples[0]:
                batch[key] = torch.tensor([ex[key] for ex in examples])
        return batch


def is_packed(batch: dict[str, Any]) -> bool:
    return "seq_idx" in batch


def packed_logps(model: Any, batch: dict[str, Any], **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(per-sequence sums of answer-token log-probs, answer tokens per sequence, model outputs),
    through the fused LM head (`trl.trainer.utils.add_fused_lm_head`). The label at each
    sequence's position 0 is masked, so no token is scored from the previous sequence's end."""
    labels = batch["input_ids"].masked_fill(
        (batch["completion_mask"] == 0) | (batch["position_ids"] == 0), -100
    )
    outputs = model(
        **{k: batch[k] for k in MODEL_KEYS}, labels=labels, fused_lm_head=True, use_cache=False, **kwargs
    )
    scored = labels[0, 1:]
    per_token = outputs.log_probs[0, -scored.numel() :]  # zero where the label is -100
    index = batch["seq_idx"][0, 1:].long()
    n = batch["cu_seq_lens_q"].numel() - 1
    sums = per_token.new_zeros(n).index_add(0, index, per_token)
    counts = torch.zeros(n, dtype=torch.long, device=index.device).index_add(
        0, index, (scored != -100).long()
    )
    return sums, counts, outputs
