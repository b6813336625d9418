"""The data stage: raw files -> records -> filtered -> deduplicated -> mixed -> JSONL + report."""
