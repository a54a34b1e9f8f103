"""course_lib: the small, tested library behind the course notebooks.

Each module holds one idea that a notebook teaches:

    profiles    smoke / cpu / gpu sizes for every notebook, and notebook setup
    device      seeding and device choice
    corpus      loading text (bundled, files, Hugging Face, URL) and the train/val/test split
    tokenizers  the character tokenizer
    batching    random contiguous blocks for training, fixed batches for evaluation
    training    the training loop, evaluation, checkpoints
    generation  sampling new text from any next-token model
    milestones  outputs/milestoneN.txt and outputs/results.json
    plots       loss curves and other figures
    checks      "does my notebook version equal the library version?"
    models/     bigram, attention, blocks, GPT
"""

__version__ = "0.1.0"

from .profiles import setup_notebook  # noqa: F401  (the one import every notebook starts with)
