"""The exact commands that run the whole pipeline on a GPU machine with the real model and data,
built from the stage registry (`k12tune.cli.STAGES`: each stage's script and default config),
so the report, the README and the tests cannot drift from the stages that exist."""

from __future__ import annotations

from k12tune.cli import STAGES
from k12tune.report.document import Commands, Section, Text
from k12tune.stack import ADAPTER_STAGES

SETUP = "bash scripts/setup_env.sh --dry-run false"
# The training stages (those that write adapters): accelerate distributes their trainer over
# GPUs; the others run in one process.
LAUNCHED = frozenset(ADAPTER_STAGES)
# train_orpo and train_dpo both write outputs/align by default: the list runs DPO and offers
# ORPO in its place, since running both into one folder stops the second (README: outputs/align).
INSTEAD = {"train_orpo": "train_dpo"}
MULTI_GPU_CONFIG = "configs/accelerate/deepspeed_zero2.yaml"


def stage_command(name: str, accelerate_config: str | None = None) -> str:
    """The command that runs stage `name` for real with its default config."""
    launcher = "python"
    if name in LAUNCHED:
        launcher = "accelerate launch" + (f" --config_file {accelerate_config}" if accelerate_config else "")
    return f"{launcher} -m scripts.{name} --config {STAGES[name].default_config} --dry-run false"


def gpu_commands() -> list[str]:
    """Setup, then every stage in the registry's order, as shell lines; a stage that can replace
    another follows it as a commented alternative."""
    lines = [SETUP]
    for name in STAGES:
        if name in INSTEAD:
            continue
        lines.append(stage_command(name))
        for other, replaced in INSTEAD.items():
            if replaced == name:
                lines += [f"# or, instead of {name} (same output folder):", f"# {stage_command(other)}"]
    return lines


def gpu_section() -> Section:
    return Section(
        "gpu",
        "Run it on a GPU",
        [
            Text(
                "The same pipeline on a GPU machine with the real model and data: each command "
                "with its default config. Without `--dry-run false` a command prints its plan "
                "and writes nothing (the training stages also check that it fits in GPU memory)."
            ),
            Commands(tuple(gpu_commands())),
            Text(
                "Several GPUs: give the training stages an accelerate config from "
                "`configs/accelerate/` and set `num_processes` in it to the GPU count (README: "
                "Several GPUs; 4-bit needs `ddp.yaml`), for example:"
            ),
            Commands((stage_command("train_sft", MULTI_GPU_CONFIG),)),
            Text(
                "Evaluation runs in one process; on a node with several GPUs, run one evaluation "
                "per GPU (`CUDA_VISIBLE_DEVICES=1 ... peft_adapter=outputs/sft`)."
            ),
        ],
    )
