"""The logit check every export passes before it is published.

The staged export is reloaded the way its users will load it and its logits are compared with
those of the model that was trained, on a few chat-formatted prompts, one prompt per forward
pass (so there is no padding to mask). All logits are float32. Definitions, each a maximum over
every prompt, position and vocabulary entry:
- reference: the base in float32 with the stack's adapters applied unmerged, all active at once
  (`k12tune.stack.apply_adapters`), i.e. the trained model;
- `max_abs_diff` = max |export - reference|, the export being the staged folder reloaded in
  float32 (adapter mode: the bare base + `PeftModel.from_pretrained`; merged mode: plain
  `AutoModelForCausalLM.from_pretrained`, no peft);
- `reference_scale` = max |reference|;
- `adapter_effect` = max |reference - bare base|: how much the adapters change the logits;
- for each alternative, a model lacking part of the stack (the bare base; with two or more
  adapters also the stack without each one): its `effect` max |reference - alternative| and
  the export's `distance` max |export - alternative|.

The export passes when `max_abs_diff` <= tolerance and, for every alternative whose effect
exceeds the tolerance, distance > `max_abs_diff` (the export is nearer the trained model than
the alternative). The second rule catches an export that lost an adapter even under a
tolerance loose enough to hide it; an alternative within the tolerance of the reference cannot
be told apart from rounding and is reported as unconfirmed instead.

Default tolerance: max(1e-3, RELATIVE_TOLERANCE[dtype] x `reference_scale`), dtype being that of
the saved weights (adapter mode: float32, as the adapter keeps its own float32 weights, so the
export equals the reference up to the order of the arithmetic). Rounding merged weights to 16
bits perturbs each by a relative error of at most half an epsilon, and the logits by an amount
that grows with their scale. Measured on the tests' tiny Qwen2 (trained SFT, SFT+DPO and
SFT+ORPO stacks, merged in float32 then cast, 4-5 prompts of ~90 positions):
max_abs_diff / reference_scale was 0.018-0.027 for bfloat16, 0.004-0.007 for float16, and
1.6e-6-2.5e-6 (under 3e-5 absolute) for float32; the combined adapter of adapter mode differed
by 1.1e-5 at most. On random Qwen2 models the bfloat16 ratio
roughly doubled from 2 to 24 layers. The factors below keep a margin of at least 3.5x over
those measurements (about 2x after such a doubling), and float32 sits under the 1e-3 floor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k12tune.config.export import ExportConfig
from k12tune.errors import DataError
from k12tune.stack import Stack, load_base_model

RELATIVE_TOLERANCE = {"float32": 0.0, "bfloat16": 0.1, "float16": 0.03}
ABSOLUTE_FLOOR = 1e-3
BARE_BASE = "the bare base"


def saved_dtype(cfg: ExportConfig) -> str:
    return cfg.dtype if cfg.mode == "merged" else "float32"


def default_tolerance(dtype: str, reference_scale: float) -> float:
    return max(ABSOLUTE_FLOOR, RELATIVE_TOLERANCE[dtype] * reference_scale)


def describe_tolerance(cfg: ExportConfig) -> str:
    if cfg.check.tolerance is not None:
        return f"{cfg.check.tolerance:g} (configured)"
    dtype = saved_dtype(cfg)
    factor = RELATIVE_TOLERANCE[dtype]
    if not factor:
        return f"{ABSOLUTE_FLOOR:g} ({dtype} weights: equal to the trained model up to arithmetic order)"
    return f"max({ABSOLUTE_FLOOR:g}, {factor:g} x max |reference logit|) for {dtype} weights"


def encode_prompts(tokenizer: Any, prompts: list[str]) -> list[Any]:
    """Each prompt as one user turn with the generation prompt, as the model will be asked."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
        for prompt in prompts
    ]


def forward_logits(model: Any, inputs: list[Any]) -> list[Any]:
    import torch

    with torch.no_grad():
        return [model(input_ids=ids.to(model.device)).logits[0].float().cpu() for ids in inputs]


@dataclass(frozen=True)
class Reference:
    logits: list[Any]
    alternatives: dict[str, list[Any]]  # label -> logits of a model lacking part of the stack


def reference_logits(model: Any, stack: Stack, inputs: list[Any]) -> Reference:
    """The trained model's logits and its alternatives', from `model`: the stack's PeftModel with
    every adapter active (`apply_adapters(..., merge=False)`), left as it was found."""
    names = list(model.peft_config)
    logits = forward_logits(model, inputs)
    with model.disable_adapter():
        alternatives = {BARE_BASE: forward_logits(model, inputs)}
    if len(names) > 1:
        for name, adapter in zip(names, stack.adapters, strict=True):
            model.base_model.set_adapter([other for other in names if other != name])
            alternatives[f"without {adapter.folder} ({adapter.stage})"] = forward_logits(model, inputs)
        model.base_model.set_adapter(names)
    return Reference(logits, alternatives)


def reload_export(cfg: ExportConfig, folder: Path, device: str) -> Any:
    """The staged export in float32, loaded the way its users load it: merged weights by plain
    transformers (no peft), an adapter by PEFT on the bare base."""
    import torch

    if cfg.mode == "merged":
        merged = cfg.model.model_copy(update={"base": str(folder), "revision": None})
        return load_base_model(merged, torch.float32, device)
    from peft import PeftModel

    base = load_base_model(cfg.model, torch.float32, device)
    return PeftModel.from_pretrained(base, str(folder)).eval()


def max_abs(tensors: Iterable[Any]) -> float:
    """The largest absolute entry of all `tensors`; NaN if any entry is NaN."""
    import torch

    return torch.stack([t.abs().amax() for t in tensors]).amax().item()


def max_abs_diff(a: list[Any], b: list[Any]) -> float:
    """max |a - b| over prompts, positions and vocabulary."""
    return max_abs(x - y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class CheckResult:
    tolerance: float
    max_abs_diff: float
    reference_scale: float
    alternatives: dict[str, dict[str, float]]  # label -> {"effect": ..., "distance": ...}
    prompts: int
    positions: int

    @property
    def adapter_effect(self) -> float:
        return self.alternatives[BARE_BASE]["effect"]

    def failures(self) -> list[str]:
        # Written as "not <=" so that a NaN fails.
        found = []
        if not self.max_abs_diff <= self.tolerance:
            found.append(
                f"max |export - reference| logit {self.max_abs_diff:.4g} > tolerance {self.tolerance:.4g}"
            )
        for label, numbers in self.alternatives.items():
            if numbers["effect"] > self.tolerance and not numbers["distance"] > self.max_abs_diff:
                found.append(
                    f"the export is no nearer the trained model ({self.max_abs_diff:.4g}) than "
                    f"{label} ({numbers['distance']:.4g}; that model differs from the trained one "
                    f"by {numbers['effect']:.4g}): an adapter is missing from it"
                )
        return found

    def unconfirmed(self) -> list[str]:
        """Alternatives the check cannot tell from the trained model under this tolerance."""
        return [
            label for label, numbers in self.alternatives.items() if not numbers["effect"] > self.tolerance
        ]

    @property
    def passed(self) -> bool:
        return not self.failures()

    def counts(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "max_abs_diff": self.max_abs_diff,
            "reference_scale": self.reference_scale,
            "adapter_effect": self.adapter_effect,
            "alternatives": self.alternatives,
            "unconfirmed": self.unconfirmed(),
            "prompts": self.prompts,
            "positions": self.positions,
        }


def compare(reference: Reference, export: list[Any], dtype: str, tolerance: float | None) -> CheckResult:
    scale = max_abs(reference.logits)
    return CheckResult(
        tolerance=tolerance if tolerance is not None else default_tolerance(dtype, scale),
        max_abs_diff=max_abs_diff(export, reference.logits),
        reference_scale=scale,
        alternatives={
            label: {
                "effect": max_abs_diff(reference.logits, logits),
                "distance": max_abs_diff(export, logits),
            }
            for label, logits in reference.alternatives.items()
        },
        prompts=len(export),
        positions=sum(x.shape[0] for x in export),
    )


def raise_if_failed(result: CheckResult, target: Path) -> None:
    if result.passed:
        return
    raise DataError(
        f"export check failed, nothing was published to {target}: "
        + "; ".join(result.failures())
        + f" (over {result.prompts} prompts, {result.positions} positions; max |reference logit| "
        f"{result.reference_scale:.4g}, adapter effect {result.adapter_effect:.4g}). The staged "
        "export was removed; see k12tune.export.check for the definitions."
    )
