"""TRL's `SFTTrainer` with the project's speed switches (`speed.SpeedMixin`). A module of its
own so that importing the stage (for a dry run) never imports TRL."""

from __future__ import annotations

from trl import SFTTrainer

from k12tune.train.speed import SpeedMixin


class K12SFTTrainer(SpeedMixin, SFTTrainer):
    pass
