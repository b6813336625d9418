"""Adapter mode: one LoRA adapter for the bare base, whatever the stack.

A one-adapter stack (an SFT adapter, or an alignment adapter trained with `start.mode:
continue`) is copied byte for byte. A two-adapter stack (an alignment adapter trained on base +
SFT merged) becomes one adapter through PEFT's `add_weighted_adapter` with `combination_type:
cat` and weights 1: in every module it stacks the adapters' A matrices, each multiplied by its
own scaling (alpha / r, alpha / sqrt(r) with rsLoRA, or its `alpha_pattern` value), and their B
matrices side by side, so that B_cat A_cat = sum_i scaling_i B_i A_i: the exact sum of the
updates, which is the trained model since the alignment update was trained on top of the
merged SFT update. The result has rank sum_i r_i (a module with a smaller `rank_pattern` rank
is padded with zeros) and alpha equal to that rank, hence scaling 1. One adapter serves with
PEFT or vLLM without a merged copy of the base.

Settings whose adapters do not add up that way are refused before any model is loaded (see
`NOT_ADDITIVE`); rsLoRA is exact only if the saved config drops it (scaling 1 = alpha / r), which
`combine` does. Anything else is left to the logit check, which compares the result with the
stacked adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from k12tune.config.export import ExportConfig
from k12tune.errors import ConfigError
from k12tune.export.files import ADAPTER_CONFIG, copy_adapter
from k12tune.stack import ADAPTER_WEIGHTS, Adapter, Stack

# PEFT saves the adapter named "default" at the top of the folder (others in a subfolder), so
# the combined adapter takes that name; `apply_adapters` names the stack's a0, a1, ...
COMBINED = "default"

# adapter_config.json key -> why `cat` cannot combine adapters that set it.
NOT_ADDITIVE = {
    "use_dora": "DoRA rescales each whole weight by a trained magnitude, so two updates do not add",
    "modules_to_save": "fully trained module copies replace each other instead of adding up",
    "lora_bias": "trained LoRA biases are not part of the low-rank product",
    "trainable_token_indices": "trained embedding rows replace each other",
    "target_parameters": "PEFT cannot combine adapters on nn.Parameter targets",
    "layer_replication": "replicated layers change the model's structure",
    "alora_invocation_tokens": "an activated LoRA acts only after its invocation tokens",
}


def adapter_config(adapter: Adapter) -> dict[str, Any]:
    return orjson.loads((adapter.folder / ADAPTER_CONFIG).read_bytes())


def rank(config: dict[str, Any]) -> int:
    """The largest rank of any module: what a server must allow (vLLM's --max-lora-rank)."""
    return max([config["r"], *config.get("rank_pattern", {}).values()])


def export_rank(stack: Stack) -> int:
    """The exported adapter's rank: the sum of the stack's ranks (PEFT's `cat` rank)."""
    return sum(rank(adapter_config(a)) for a in stack.adapters)


def check_combinable(stack: Stack) -> None:
    if len(stack.adapters) < 2:
        return
    for adapter in stack.adapters:
        config = adapter_config(adapter)
        problems = [f"{key} ({why})" for key, why in NOT_ADDITIVE.items() if config.get(key)]
        if config.get("bias", "none") != "none":
            problems.append(f"bias {config['bias']!r} (trained biases replace each other)")
        if config.get("peft_type") != "LORA":
            problems.append(f"peft_type {config.get('peft_type')!r} (only LoRA adapters are combined)")
        if problems:
            raise ConfigError(
                f"{adapter.folder / ADAPTER_CONFIG}: {'; '.join(problems)}. The stack "
                f"{stack.describe()} cannot be exported exactly as one adapter: use mode: merged"
            )


def combine(cfg: ExportConfig, model: Any, staging: Path) -> list[str]:
    """Save the stack's adapters, loaded in `model` (a PeftModel), as one adapter in `staging`."""
    names = list(model.peft_config)
    model.add_weighted_adapter(names, [1.0] * len(names), adapter_name=COMBINED, combination_type="cat")
    config = model.peft_config[COMBINED]
    # The scalings are in lora_A now: the saved config must give scaling alpha / r = 1.
    config.use_rslora = False
    config.base_model_name_or_path = cfg.model.base
    config.revision = cfg.model.revision
    # No embedding copies: the base's embeddings are never resized or trained here, and PEFT's
    # "auto" would ask the hub about the base to decide. PEFT also writes its own README.md
    # beside the adapter; the export's card replaces it.
    model.save_pretrained(str(staging), selected_adapters=[COMBINED], save_embedding_layers=False)
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS]


def write_adapter(cfg: ExportConfig, stack: Stack, model: Any, staging: Path) -> dict[str, Any]:
    """Adapter mode's files in `staging`, and what the card and manifest say about them."""
    if len(stack.adapters) == 1:
        files = copy_adapter(stack.adapters[0].folder, staging)
        how = "copied"
    else:
        files = combine(cfg, model, staging)
        how = "combined (PEFT add_weighted_adapter, cat)"
    return {"rank": export_rank(stack), "weights": files, "how": how}
