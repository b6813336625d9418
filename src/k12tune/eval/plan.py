"""`eval_harness`'s dry run: the runs, each task's data source, and the exact number of lm-eval
requests, built by lm-eval itself from the local copies; no model is loaded, no hub is asked."""

from __future__ import annotations

import tempfile
from pathlib import Path

from k12tune.config.eval import EvalConfig
from k12tune.errors import K12TuneError
from k12tune.eval.harness import describe_source, run_stacks
from k12tune.eval.tasks import TaskSource, resolve_tasks, task_manager, write_task_folder


def count_requests(source: TaskSource, manager: object, limit: int | float | None) -> tuple[int, int]:
    """(questions, loglikelihood requests) one run makes for `source`, as lm-eval builds them."""
    from lm_eval.evaluator_utils import get_sample_size

    loaded = manager.load([source.task.name])  # type: ignore[attr-defined]
    questions = requests = 0
    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.build_all_requests(limit=get_sample_size(task, limit))
        questions += len({inst.doc_id for inst in task.instances})
        requests += len(task.instances)
    return questions, requests


def eval_plan(cfg: EvalConfig) -> str:
    lines = ["eval_harness plan (dry run: no model is loaded, nothing is written)"]
    try:
        stacks = run_stacks(cfg)
        runs = [f"  {name}: {stack.describe()}" for name, stack in stacks.items()]
    except K12TuneError as exc:
        stacks, runs = {}, [f"  not ready: {exc}"]
    lines += [f"runs ({'compare mode' if cfg.compare else 'one run'}):", *runs]
    sources = resolve_tasks(cfg)
    total = 0
    counted = True
    lines.append(f"tasks (local copies looked up in {cfg.data_dir}/<task>/):")
    with tempfile.TemporaryDirectory() as tmp:
        write_task_folder(sources, Path(tmp))
        manager = task_manager(Path(tmp))
        for source in sources:
            lines.append(f"  {describe_source(source)}")
            if source.local is None:
                counted = False
                lines.append("    requests: not counted (data on the hub; a dry run stays offline)")
                continue
            questions, requests = count_requests(source, manager, cfg.lm_eval_limit())
            total += requests
            lines.append(
                f"    {len(source.subtasks)} subtask(s), {questions} questions, {requests} requests per run"
            )
    covered = {sub.name for source in sources for sub in source.subtasks}
    k12 = [s for s in cfg.k12_subjects if s in covered]
    lines.append(f"K12 slice: {len(k12)} of {len(cfg.k12_subjects)} listed subjects are among the tasks")
    n_runs = max(1, len(stacks) or len(cfg.runs()))
    suffix = "" if counted else " (local tasks only)"
    lines.append(f"requests: {total} per run x {n_runs} run(s) = {total * n_runs}{suffix}")
    lines.append(f"output: {cfg.out_dir}/results.json, summary.md, scores.png")
    return "\n".join(lines)
