"""Strict, typed stage configs: one pydantic model per stage, loaded from YAML plus overrides."""

from k12tune.config.loader import StrictModel, load_config, parse_override

__all__ = ["StrictModel", "load_config", "parse_override"]
