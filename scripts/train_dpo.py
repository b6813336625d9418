"""`accelerate launch -m scripts.train_dpo --config configs/dpo.yaml --dry-run false`
(or plain `python -m scripts.train_dpo ...` on one GPU)."""

from k12tune.cli import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("train_dpo"))
