"""`python -m scripts.prepare_data --config configs/data.yaml --dry-run false`."""

from k12tune.cli import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("prepare_data"))
