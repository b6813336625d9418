"""export_lora: publish a trained adapter stack as one LoRA adapter or as merged weights, each
checked against the trained model's logits before it is published (see `export.py`)."""
