"""Thin entry points: `python -m scripts.<stage>` is the same as `k12tune <stage>`."""
