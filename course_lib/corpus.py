"""Loading training text, recording where it came from, and splitting it.

    load_corpus(spec) -> Corpus(text, provenance)
    split_corpus(text) -> Splits(train, val, test)     (contiguous, deterministic, 80/10/10)

Corpus specs:
    "bundled"                 the course's own stories in data/corpus/ (offline, default)
    "path/to/book.txt"        one file, a folder of .txt files, or a glob like "texts/*.txt"
    "hf:<dataset id>"         a Hugging Face dataset, e.g. "hf:mickume/harry_potter_tiny"
    "url:<address>"           a plain-text file on the web, downloaded once into data/.cache/

Local files and Hub datasets are read with the `datasets` library (one well-tested reader for
text, CSV and the Hub) rather than a hand-written one.
"""

from __future__ import annotations

import glob
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .paths import CORPUS_DIR, cache_dir

BUNDLED_LICENCE = "CC BY 4.0 (original writing by the course team; see data/README.md)"

# Below this many characters a corpus cannot fill even the smallest training blocks of all
# three splits; we refuse it early with a clear message instead of failing deep in batching.
MIN_CORPUS_CHARS = 1000


class CorpusError(ValueError):
    """A corpus could not be loaded or is unusable. The message says what to do."""


@dataclass
class Corpus:
    text: str
    name: str
    source: str
    licence: str
    files: list[str] = field(default_factory=list)

    @property
    def n_chars(self) -> int:
        return len(self.text)

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    def provenance(self) -> dict:
        return {"name": self.name, "source": self.source, "licence": self.licence,
                "chars": self.n_chars, "bytes": self.n_bytes, "files": len(self.files)}

    def __repr__(self) -> str:  # keep notebook output short: never print the whole text
        return (f"Corpus(name={self.name!r}, chars={self.n_chars:,}, files={len(self.files)}, "
                f"licence={self.licence!r})")


def clean_text(text: str) -> str:
    """The cleaning every corpus gets, and nothing more (notebook 01 explains each choice).

    - drop a UTF-8 byte-order mark (Windows editors add one; it would become a 'character')
    - Windows/old-Mac line endings -> '\\n' (otherwise '\\r' joins the vocabulary)
    - curly quotes and dashes -> their ASCII forms (one symbol for one idea)
    - trailing spaces removed from lines (invisible, but they cost the model effort)
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    for fancy, plain in {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                         "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " "}.items():
        text = text.replace(fancy, plain)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _read_text_files(paths: list[Path]) -> str:
    """Read whole files (not line by line) in the given order with `datasets`."""
    datasets = _quiet_datasets()
    ds = datasets.load_dataset("text", data_files=[str(p) for p in paths], sample_by="document",
                               split="train", encoding="utf-8")
    documents = [doc if doc.endswith("\n") else doc + "\n" for doc in ds["text"]]
    return "\n".join(documents)


def _local_files(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise CorpusError(f"The folder {path} contains no .txt files. Put UTF-8 .txt files in it "
                              "or point the corpus parameter at a file or a glob like 'texts/*.txt'.")
        return files
    if path.is_file():
        return [path]
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec)) if Path(p).is_file())
        if not files:
            raise CorpusError(f"The pattern {spec!r} matches no files. Check the folder and the pattern.")
        return files
    raise CorpusError(
        f"Corpus {spec!r} not found: no such file or folder. Use 'bundled', a path to a .txt file, "
        "a folder or glob of .txt files, 'hf:<dataset id>' or 'url:<address>'."
    )


def _load_files(spec: str, files: list[Path], name: str, licence: str) -> Corpus:
    for f in files:
        try:
            f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(f"{f} is not UTF-8 text ({err.reason} at byte {err.start}). "
                              "Re-save it as UTF-8 (most editors: 'Save with encoding').") from err
    text = clean_text(_read_text_files(files))
    return Corpus(text=text, name=name, source=spec, licence=licence, files=[str(f) for f in files])


def _load_hf(dataset_id: str) -> Corpus:
    datasets = _quiet_datasets()
    try:
        ds = datasets.load_dataset(dataset_id, split="train")
    except Exception as err:  # the hub raises many kinds; all mean the same to a student
        raise CorpusError(
            f"Could not load the Hugging Face dataset {dataset_id!r}: {type(err).__name__}: {err}. "
            "Check the id and your internet connection. Offline, download it once on a connected "
            "machine (it lands in ~/.cache/huggingface) or save its text as .txt files and use a path."
        ) from err
    columns = [c for c, feat in ds.features.items() if getattr(feat, "dtype", None) in ("string", "large_string")]
    if not columns:
        raise CorpusError(f"Dataset {dataset_id!r} has no text column (columns: {list(ds.features)}).")
    column = "text" if "text" in columns else columns[0]
    text = clean_text("\n".join(str(t) for t in ds[column]))
    licence = getattr(ds.info, "license", None) or "see the dataset card on the Hugging Face Hub"
    return Corpus(text=text, name=dataset_id, source=f"hf:{dataset_id}", licence=licence)


def _load_url(address: str) -> Corpus:
    # One file per address, named by its hash, so a second run (or an offline run) reuses it.
    target = cache_dir() / f"url-{hashlib.sha256(address.encode()).hexdigest()[:16]}.txt"
    if not target.exists():
        try:
            with urllib.request.urlopen(address, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise CorpusError(
                f"Download of {address!r} failed ({err}). If you are offline, download the file by hand "
                f"and save it as {target}, or pass its local path as the corpus instead."
            ) from err
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)  # atomic: a half-finished download never looks complete
    corpus = _load_files(f"url:{address}", [target], name=address.rsplit("/", 1)[-1] or address,
                         licence="see the source website")
    return corpus


def load_corpus(spec: str = "bundled") -> Corpus:
    """Load a corpus by spec (see the module docstring) and check it is usable."""
    if not isinstance(spec, str) or not spec.strip():
        raise CorpusError("The corpus spec is empty. Use 'bundled' or a path, 'hf:<id>' or 'url:<address>'.")
    spec = spec.strip()
    if spec == "bundled":
        files = sorted(CORPUS_DIR.glob("*.txt"))
        if not files:
            raise CorpusError(f"The bundled corpus is missing: no .txt files in {CORPUS_DIR}. "
                              "Restore data/corpus/ from git (git checkout -- data/corpus).")
        corpus = _load_files("bundled", files, name="Saltreach stories (bundled)", licence=BUNDLED_LICENCE)
    elif spec.startswith("hf:"):
        corpus = _load_hf(spec[3:])
    elif spec.startswith("url:"):
        corpus = _load_url(spec[4:])
    else:
        files = _local_files(spec)
        corpus = _load_files(spec, files, name=Path(spec).name or spec, licence="your own text")
    if corpus.n_chars < MIN_CORPUS_CHARS:
        what = "empty" if corpus.n_chars == 0 or not corpus.text.strip() else f"only {corpus.n_chars} characters"
        raise CorpusError(
            f"Corpus {spec!r} is {what}; the course needs at least {MIN_CORPUS_CHARS:,} characters "
            "(ideally 100,000+) to fill training, validation and test blocks. Add more text."
        )
    return corpus


@dataclass
class Splits:
    train: str
    val: str
    test: str

    def sizes(self) -> dict:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_corpus(text: str, train_frac: float = 0.8, val_frac: float = 0.1) -> Splits:
    """Contiguous train / val / test slices: the first 80 % trains, the next 10 % validates,
    the last 10 % is the test set that only the final comparison (notebook 12) looks at.

    Contiguous (not shuffled lines) because a language model must be judged on text it has
    never seen in context; a random line split leaks neighbouring sentences into training.
    Deterministic: every notebook gets the very same split.
    """
    if not (0 < train_frac < 1 and 0 < val_frac < 1 and train_frac + val_frac < 1):
        raise ValueError(f"Split fractions must be positive and leave room for test: got "
                         f"train={train_frac}, val={val_frac}.")
    n = len(text)
    a, b = int(n * train_frac), int(n * (train_frac + val_frac))
    return Splits(train=text[:a], val=text[a:b], test=text[b:])
