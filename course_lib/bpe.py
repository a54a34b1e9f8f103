"""GPT-2's byte-pair-encoding tokenizer, through tiktoken, working offline.

tiktoken normally downloads GPT-2's BPE table (`r50k_base.tiktoken`, 50,000 merges + 256 bytes +
<|endoftext|>) on first use, which fails on offline or proxied machines. The same file, byte for
byte, ships inside the source distribution of the `openai-whisper` package on PyPI
(`whisper/assets/gpt2.tiktoken`). `make setup` runs `python -m course_lib.bpe --fetch`, which
downloads that source archive with pip (no install, no dependencies), extracts the one file,
checks its SHA-256 and stores it under data/.cache/tokenizers/. From then on everything is local.

    enc = gpt2_tokenizer()
    enc.encode("Hello world")  ->  [15496, 995]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from .paths import DATA_DIR
from .tokenizers import check_token_ids

BPE_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
WHISPER_SDIST = "openai-whisper==20250625"          # pinned: the archive we verified
WHISPER_MEMBER = "whisper/assets/gpt2.tiktoken"
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
EOT = "<|endoftext|>"
EOT_ID = 50256


class TokenizerFileError(RuntimeError):
    pass


def bpe_file() -> Path:
    """Where the BPE table lives (COURSE_BPE_FILE overrides it)."""
    return Path(os.environ.get("COURSE_BPE_FILE") or DATA_DIR / ".cache" / "tokenizers" / "gpt2.tiktoken")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _store(data: bytes, target: Path, origin: str) -> Path:
    if _sha256(data) != BPE_SHA256:
        raise TokenizerFileError(f"The BPE table from {origin} has the wrong SHA-256 "
                                 f"({_sha256(data)[:12]}..., expected {BPE_SHA256[:12]}...). Not using it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def fetch_from_pypi(target: Path) -> Path:
    """pip-download the openai-whisper source archive (not installed) and extract the table."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               "--dest", tmp, WHISPER_SDIST]
        result = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("openai_whisper-*.tar.gz")) + list(Path(tmp).glob("openai-whisper-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise TokenizerFileError(f"pip could not download {WHISPER_SDIST}: {result.stderr.strip()[-300:]}")
        with tarfile.open(archives[0]) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(WHISPER_MEMBER)), None)
            if member is None:
                raise TokenizerFileError(f"{archives[0].name} has no {WHISPER_MEMBER}.")
            data = tar.extractfile(member).read()
    return _store(data, target, f"PyPI ({WHISPER_SDIST})")


def fetch_from_openai(target: Path) -> Path:
    with urllib.request.urlopen(TIKTOKEN_URL, timeout=60) as response:
        return _store(response.read(), target, TIKTOKEN_URL)


def ensure_bpe_file(download: bool = True) -> Path:
    """Return the verified local BPE table, fetching it first if allowed and needed."""
    target = bpe_file()
    if target.exists():
        if _sha256(target.read_bytes()) == BPE_SHA256:
            return target
        target.unlink()  # corrupt or partial: fetch again below (or explain)
    errors = []
    if download:
        for fetch in (fetch_from_pypi, fetch_from_openai):
            try:
                return fetch(target)
            except Exception as err:  # try the next source, remember why this one failed
                errors.append(f"{fetch.__name__}: {err}")
    why = ("; ".join(errors)) if errors else "downloads were not allowed"
    raise TokenizerFileError(
        f"GPT-2's BPE table is missing at {target} ({why}). Fix: run `make setup` (or "
        f"`python -m course_lib.bpe --fetch`) on a machine that reaches PyPI, or download "
        f"{TIKTOKEN_URL} by hand and save it as {target}."
    )


_ENCODING = None


def gpt2_tokenizer():
    """tiktoken's GPT-2 encoding, built from the local table (never touches the network)."""
    global _ENCODING
    if _ENCODING is None:
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe
        from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pre-tokenisation regex

        path = ensure_bpe_file(download=False)
        _ENCODING = tiktoken.Encoding(
            name="gpt2", pat_str=r50k_pat_str,
            mergeable_ranks=load_tiktoken_bpe(str(path), expected_hash=BPE_SHA256),
            special_tokens={EOT: EOT_ID}, explicit_n_vocab=50257,
        )
    return _ENCODING


class BPETokenizer:
    """The course's tokenizer interface (encode / decode / vocab_size / to_dict) over tiktoken."""

    kind = "gpt2-bpe"

    def __init__(self):
        self.enc = gpt2_tokenizer()
        self.vocab_size = self.enc.n_vocab  # 50257
        self.eot_id = EOT_ID

    def encode(self, text: str, errors: str = "strict") -> list[int]:
        # encode_ordinary: the literal text "<|endoftext|>" in a story is just characters, never
        # the special token (that would let input text fake a document boundary).
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        # checked first: tiktoken answers an id >= 50257 with a bare KeyError, a negative one with
        # an OverflowError, and a float by silently decoding its integer part
        return self.enc.decode(check_token_ids(ids, self.vocab_size))

    def to_dict(self) -> dict:
        return {"kind": self.kind}

    def __repr__(self) -> str:
        return f"BPETokenizer(gpt2, vocab_size={self.vocab_size})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Make GPT-2's BPE table available offline.")
    parser.add_argument("--fetch", action="store_true", help="download it if missing (setup does this)")
    args = parser.parse_args(argv)
    try:
        path = ensure_bpe_file(download=args.fetch)
    except TokenizerFileError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"GPT-2 BPE table ready: {path} (sha256 verified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
