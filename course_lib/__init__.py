"""course_lib: the small, tested library behind the course notebooks.

Each module holds one idea that a notebook teaches (in course order):

    profiles     smoke / cpu / gpu sizes for every notebook, and notebook setup
    device       seeding and device choice
    corpus       loading text (bundled, files, Hugging Face, URL) and the train/val/test split
    tokenizers   the character tokenizer
    pipeline     corpus -> tokenizer -> split -> tensors, in one call
    batching     random blocks for training, fixed and sequential batches for evaluation,
                 sliding-window datasets
    training     the training loop, evaluation (loss, perplexity, bits/char), checkpoints
    generation   sampling: temperature, top-k, top-p, KV cache, streaming
    milestones   outputs/milestoneN.txt and outputs/results.json
    plots        loss curves, heat maps, the ladder
    checks       "does my notebook version equal the library version?"
    diagnostics  gradient norms and activation statistics per block
    models/      bigram, attention, blocks, GPT, GPT-2 presets and weight loading, LSTM
    words        the basic_english word tokenizer and vocabulary (notebook 09)
    recurrent    truncated BPTT batching and training for the LSTM (notebook 09)
    bpe          GPT-2's byte-pair tokenizer through tiktoken, offline (notebook 10)
    finetune     task prefixes, masked loss, schedule, held-out evaluation (notebook 11)
    registry     every trained checkpoint by name (notebook 12, the CLI, the web app)
    generate     `python -m course_lib.generate`: text from any checkpoint
    app          `python -m course_lib.app`: the web page over the checkpoints
    bench        `python -m course_lib.bench`: training and generation throughput, MFU
    train_gpt2   `python -m course_lib.train_gpt2`: GPT-2 training, single process or torchrun/DDP
"""

__version__ = "0.1.0"

from .profiles import setup_notebook  # noqa: F401  (the one import every notebook starts with)
