"""lm-eval tasks pointed at local copies of their data, so that evaluation needs no hub.

For every configured task we write a task folder that lm-eval reads with `include_path` (and
without its built-in index, so nothing else is looked up): one YAML per subtask that includes the
stock task config unchanged and overrides only where the data comes from (and the few-shot count),
plus one YAML per group listing the subtasks evaluated. lm-eval skips a YAML that fails to parse
without a word, so every file written is loaded back and checked to register its name.

Local copies live in `<data_dir>/<task>/` in the task's published format:
- grouped tasks (cmmlu, ceval-valid): `<split>/<subject>.<ext>` or `<split>/<subject>_<split>.<ext>`
  (CMMLU's `test/anatomy.csv`; C-Eval's `val/accountant_val.csv`), the subject being the stock
  subtask's `dataset_name`;
- single tasks (hellaswag, winogrande): `<split>.<ext>` (`validation.jsonl`, `train.parquet`),
with ext csv, jsonl, json or parquet, and splits named as the stock task names them. A task with a
folder is read only from it: subjects without files are left out of the group (and listed); a
subject with its evaluation split but not the few-shot split it needs is an error. A task without
a folder keeps the stock hub source.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k12tune.config.eval import EvalConfig, EvalTask
from k12tune.errors import ConfigError

log = logging.getLogger(__name__)

BUILDERS = {"csv": "csv", "jsonl": "json", "json": "json", "parquet": "parquet"}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


@functools.lru_cache(maxsize=1)
def stock_index() -> dict[str, Any]:
    """lm-eval's own task index (name -> Entry with the include-resolved config): ~5 s, once."""
    from lm_eval.tasks import TaskManager

    return TaskManager().task_index


@dataclass
class Subtask:
    name: str
    stock_yaml: Path
    config: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)  # split -> local file (empty: hub)

    @property
    def eval_split(self) -> str:
        return self.config.get("test_split") or self.config["validation_split"]

    def fewshot_split(self) -> str | None:
        c = self.config
        # lm-eval's order: the few-shot split, else training, validation, then test documents.
        candidates = [(c.get("fewshot_config") or {}).get("split"), c.get("fewshot_split")]
        candidates += [c.get(k) for k in ("training_split", "validation_split", "test_split")]
        return next((s for s in candidates if s), None)


@dataclass
class TaskSource:
    """One configured task: its subtasks to evaluate and where their data comes from."""

    task: EvalTask
    group_yaml: Path | None  # the stock group config; None for a single task
    subtasks: list[Subtask]
    left_out: list[str]  # subtasks of the stock group without a local copy
    local: Path | None  # the local copy's folder; None: the hub

    @property
    def is_group(self) -> bool:
        return self.group_yaml is not None


def _entry(name: str) -> Any:
    entry = stock_index().get(name)
    if entry is None or entry.yaml_path is None or entry.cfg is None:
        raise ConfigError(
            f"tasks: {name!r} is not an lm-eval task or group (run `lm-eval ls tasks` to list them)"
        )
    return entry


def _group_members(name: str, cfg: dict[str, Any]) -> list[str]:
    members = cfg.get("task") or []
    nested = [m for m in members if not isinstance(m, str) or stock_index()[m].kind.name != "TASK"]
    if nested:
        raise ConfigError(
            f"tasks: group {name!r} nests other groups or inline tasks ({nested[:3]}); list its "
            "subtasks or subgroups by name instead"
        )
    return list(members)


def _find(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for ext in BUILDERS:
            path = folder / f"{stem}.{ext}"
            if path.is_file():
                return path
    return None


def _local_files(sub: Subtask, root: Path, *, grouped: bool, fewshot: int) -> dict[str, Path] | None:
    """The subtask's split files under `root`; None when it has none at all."""
    subject = sub.config.get("dataset_name") or sub.name
    splits = sorted({sub.config[k] for k in SPLIT_KEYS if sub.config.get(k)})
    fewshot_split = (sub.config.get("fewshot_config") or {}).get("split")
    if fewshot_split:
        splits = sorted({*splits, fewshot_split})
    found = {}
    for split in splits:
        stems = [f"{split}/{subject}", f"{split}/{subject}_{split}"] if grouped else [split]
        path = _find(root, stems)
        if path is not None:
            found[split] = path
    if not found:
        return None
    needed = [sub.eval_split] + ([sub.fewshot_split()] if fewshot else [])
    for split in needed:
        if split not in found:
            where = f"{root}/{split}/{subject}.csv" if grouped else f"{root}/{split}.jsonl"
            raise ConfigError(
                f"{sub.name}: the local copy in {root} has {sorted(found)} but not the {split!r} split "
                f"it needs{' for its few-shot examples' if split != sub.eval_split else ''} "
                f"(expected e.g. {where})"
            )
    kinds = {BUILDERS[p.suffix[1:]] for p in found.values()}
    if len(kinds) > 1:
        raise ConfigError(f"{sub.name}: the local files in {root} mix formats ({sorted(kinds)}); use one")
    return found


def resolve_task(task: EvalTask, data_dir: Path) -> TaskSource:
    entry = _entry(task.name)
    grouped = entry.kind.name == "GROUP"
    names = _group_members(task.name, entry.cfg) if grouped else [task.name]
    subtasks = []
    for name in names:
        sub_entry = _entry(name)
        subtasks.append(Subtask(name, Path(sub_entry.yaml_path), dict(sub_entry.cfg)))
    root = data_dir / task.name
    if not root.is_dir():
        return TaskSource(task, Path(entry.yaml_path) if grouped else None, subtasks, [], None)
    kept, left_out = [], []
    for sub in subtasks:
        files = _local_files(sub, root, grouped=grouped, fewshot=task.num_fewshot or 0)
        if files is None:
            left_out.append(sub.name)
        else:
            sub.files = files
            kept.append(sub)
    if not kept:
        layout = "<split>/<subject>.csv" if grouped else "<split>.jsonl"
        raise ConfigError(f"tasks: {task.name}: {root} exists but holds no data files (expected {layout})")
    if left_out:
        log.warning(
            "%s: the local copy in %s has %d of %d subtasks; the group score covers those %d only",
            task.name,
            root,
            len(kept),
            len(subtasks),
            len(kept),
        )
    return TaskSource(task, Path(entry.yaml_path) if grouped else None, kept, left_out, root)


def resolve_tasks(cfg: EvalConfig) -> list[TaskSource]:
    sources = [resolve_task(task, Path(cfg.data_dir)) for task in cfg.tasks]
    seen: dict[str, str] = {}
    for source in sources:
        for sub in source.subtasks:
            if sub.name in seen:
                raise ConfigError(f"tasks: {sub.name} is in both {seen[sub.name]} and {source.task.name}")
            seen[sub.name] = source.task.name
    return sources


def subtask_yaml(sub: Subtask, num_fewshot: int | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"include": str(sub.stock_yaml.resolve()), "task": sub.name}
    if num_fewshot is not None:
        cfg["num_fewshot"] = num_fewshot
    if sub.files:
        builder = BUILDERS[next(iter(sub.files.values())).suffix[1:]]
        cfg["dataset_path"] = builder
        cfg["dataset_name"] = None
        cfg["dataset_kwargs"] = {"data_files": {s: str(p.resolve()) for s, p in sorted(sub.files.items())}}
        for key in SPLIT_KEYS:
            if sub.config.get(key) and sub.config[key] not in sub.files:
                cfg[key] = None  # lm-eval reads every named split when it builds the task
        fewshot = sub.config.get("fewshot_config") or {}
        if fewshot.get("split") and fewshot["split"] not in sub.files:
            cfg["fewshot_config"] = {**fewshot, "split": None}
    return cfg


def write_task_folder(sources: list[TaskSource], folder: Path) -> list[str]:
    """Write the task YAMLs into `folder` (emptied first); returns the names to evaluate.
    Raises ConfigError naming a file that lm-eval cannot load."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    expected: dict[str, Path] = {}
    for source in sources:
        for sub in source.subtasks:
            path = folder / f"{sub.name}.yaml"
            path.write_text(_dump(subtask_yaml(sub, source.task.num_fewshot)), encoding="utf-8")
            expected[sub.name] = path
        if source.is_group:
            group = {
                "include": str(source.group_yaml.resolve()),
                "group": source.task.name,
                "task": [s.name for s in source.subtasks],
            }
            path = folder / f"_group_{source.task.name}.yaml"
            path.write_text(_dump(group), encoding="utf-8")
            expected[source.task.name] = path
    registered = set(task_manager(folder).task_index)
    for name, path in expected.items():
        if name not in registered:
            raise ConfigError(f"{path}: lm-eval could not load this task file (it skips such files silently)")
    return [s.task.name for s in sources]


def task_manager(folder: Path) -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False, include_path=str(folder))


def _dump(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
