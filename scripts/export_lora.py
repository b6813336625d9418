"""`python -m scripts.export_lora --config configs/export.yaml --dry-run false`."""

from k12tune.cli import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("export_lora"))
