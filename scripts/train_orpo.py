"""`accelerate launch -m scripts.train_orpo --config configs/orpo.yaml --dry-run false`
(or plain `python -m scripts.train_orpo ...` on one GPU)."""

from k12tune.cli import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("train_orpo"))
