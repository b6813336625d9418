"""`python -m scripts.report --config configs/report.yaml --dry-run false`."""

from k12tune.cli import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("report"))
