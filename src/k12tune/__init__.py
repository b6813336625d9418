"""k12tune: fine-tune Qwen2.5-7B-Instruct into a Chinese K12 teaching assistant.

Importing the package does no work and imports no heavy library; every stage imports torch,
transformers, trl or peft inside the functions that need them.
"""

__version__ = "0.1.0"
