"""`python -m scripts.eval_harness --config configs/eval.yaml --dry-run false`."""

from k12tune.cli import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("eval_harness"))
