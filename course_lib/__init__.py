"""course_lib: the small, tested library behind the course notebooks.

Each module holds one idea that a notebook teaches (in course order):

    profiles     smoke / cpu / gpu sizes for every notebook, and notebook setup
    device       seeding and device choice
    corpus       loading text (bundled, files, Hugging Face, URL) and the train/val/test split
    tokenizers   the character tokenizer
    pipeline     corpus -> tokenizer -> split -> tensors, in one call
    batching     random blocks for training, fixed and sequential batches for evaluation,
                 sliding-window datasets
    optimization what every training loop shares: AdamW groups, the schedule, the optimizer step
    training     the training loop of the transformers, evaluation (loss, perplexity, bits/char)
    checkpoints  the one checkpoint format: save_model / load_model
    generation   sampling: temperature, top-k, top-p, KV cache, streaming
    milestones   outputs/milestoneN.txt and outputs/results.json
    plots        loss curves, heat maps, bars (every figure is shown once and saved)
    ladder       the ladder of milestones 02-08: what each rung changed, the validation curves
    reporting    sentences phrased from measured numbers ("A beats B by x"), prompts from the corpus
    checks       "does my notebook version equal the library version?", and the exercise graders
    diagnostics  gradient norms and activation statistics per block
    models/      bigram, attention, blocks, GPT, GPT-2 presets and weight loading, LSTM
    words        the basic_english word tokenizer and vocabulary (notebook 09)
    recurrent    truncated BPTT batching and training for the LSTM (notebook 09)
    bpe          GPT-2's byte-pair tokenizer through tiktoken, offline (notebook 10)
    finetune     task prefixes, the dev split, masked loss, fine-tuning (notebook 11)
    task_scores  task scores a reader can trust: intervals, two readings of sorting, baselines (11b)
    registry     every trained checkpoint by name (notebook 12, the CLI, the web app), shipped models
    generate     `python -m course_lib.generate`: text from any checkpoint
    train        `python -m course_lib.train char|lstm|gpt2|finetune`: what the notebooks train
    app          `python -m course_lib.app`: the web page over the checkpoints
    bench        `python -m course_lib.bench`: training and generation throughput, MFU
    train_gpt2   `python -m course_lib.train_gpt2`: GPT-2 training, single process or torchrun/DDP
    recipe_bench `python -m course_lib.recipe_bench`: the course vs nanoGPT's recipe, side by side
    gpu_check    `make gpu-check`: one prepared check of every GPU path
"""

__version__ = "0.1.0"

from .profiles import setup_notebook  # noqa: F401  (the one import every notebook starts with)
