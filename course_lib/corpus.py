"""Loading training text, recording where it came from, and splitting it.

    load_corpus(spec) -> Corpus(text, provenance)
    split_corpus(text) -> Splits(train, val, test)     (contiguous, deterministic, 80/10/10)

Corpus specs:
    "bundled"                 the course's own stories in data/corpus/ (offline, default)
    "path/to/book.txt"        one file, a folder, or a glob like "texts/*.txt" ("texts/**/*.txt"
                              also looks in sub-folders)
    "hf:<dataset id>"         a Hugging Face dataset, e.g. "hf:mickume/harry_potter_tiny"
    "url:<address>"           a text, PDF or EPUB file on the web, downloaded once into data/.cache/

File formats (chosen by the file name's ending; folders and globs may mix them):
    .txt                      UTF-8 text (UTF-16 with a byte-order mark, Windows Notepad's
                              "Unicode", is read too)
    .md, .markdown            read as text, markup and all (see _read_plain_text for why)
    .pdf                      the PDF's text layer, through the `pypdf` library
    .epub                     the book's chapters in reading order (see _read_epub)
A single file or a glob is read as text whatever its ending; a folder contributes only the files
with one of these endings. Hidden files (".name") are ignored, as `ls` and glob ignore them.

What happens to a file that cannot be used:
    - it holds no text (empty, only whitespace, only NUL bytes, a PDF without a text layer): it is
      skipped with a CorpusWarning, listed in Corpus.skipped and in the provenance; skipping it
      loses nothing. If no file is left, load_corpus raises CorpusError.
    - it holds text we cannot read (not UTF-8, a binary file, a damaged or password-protected
      PDF or EPUB): CorpusError naming the file and the fix, because skipping it would silently
      drop text the user meant to train on.
    - a sub-folder, broken link or unsupported file in a folder, or a folder matched by a glob:
      skipped with a warning, and listed in Corpus.skipped.

Local files are read directly (a text file is one `read`); only the Hub needs `datasets`.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import posixpath
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from .paths import CORPUS_DIR, cache_dir

BUNDLED_LICENCE = "CC BY 4.0 (original writing by the course team; see data/README.md)"

# Below this many characters a corpus cannot fill even the smallest training blocks of all
# three splits; we refuse it early with a clear message instead of failing deep in batching.
MIN_CORPUS_CHARS = 1000

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
FORMAT_SUFFIXES = TEXT_SUFFIXES + (".pdf", ".epub")  # what a folder contributes
FORMATS_IN_WORDS = ".txt, .md, .pdf or .epub"


class CorpusError(ValueError):
    """A corpus could not be loaded or is unusable. The message says what to do."""


class CorpusWarning(UserWarning):
    """Some files of a corpus were skipped; Corpus.skipped lists them with the reason."""


class _NoText(Exception):
    """Raised by a reader for a file that holds no text at all (so skipping it loses nothing)."""

    def __init__(self, reason: str, fix: str):  # both phrases, without a final full stop
        super().__init__(reason)
        self.reason, self.fix = reason, fix


@dataclass
class Corpus:
    text: str
    name: str
    source: str
    licence: str
    files: list[str] = field(default_factory=list)    # the files whose text is in `text`, in order
    skipped: list[str] = field(default_factory=list)  # "path: reason" for everything left out

    @property
    def n_chars(self) -> int:
        return len(self.text)

    @property
    def n_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    def provenance(self) -> dict:
        prov = {"name": self.name, "source": self.source, "licence": self.licence,
                "chars": self.n_chars, "bytes": self.n_bytes, "files": len(self.files)}
        if self.skipped:  # only when something was left out, so the usual record stays short
            prov["skipped"] = list(self.skipped)
        return prov

    def __repr__(self) -> str:  # keep notebook output short: never print the whole text
        skipped = f", skipped={len(self.skipped)}" if self.skipped else ""
        return (f"Corpus(name={self.name!r}, chars={self.n_chars:,}, files={len(self.files)}{skipped}, "
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


# ---------------------------------------------------------------------------------------------
# Readers: one file -> its raw text. Each raises CorpusError for text it cannot read and _NoText
# for a file that has none.

def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError as err:
        raise CorpusError(f"{path} cannot be read: permission denied. Make it readable "
                          f"(e.g. chmod a+r '{path}') or copy the text into a file you own.") from err
    except OSError as err:
        raise CorpusError(f"{path} cannot be read ({err.strerror or err}). Check the file, "
                          "or leave it out of the corpus.") from err


def _read_plain_text(path: Path) -> str:
    """A text file, decoded as UTF-8.

    Markdown (.md) is read the same way, markup and all: Markdown is made to be read as plain
    text, and stripping it would need a Markdown parser and would silently change text that
    merely looks like markup (a '*' or '_' in prose, '#' in a hashtag). The model simply learns
    '#' and '**' as characters; convert the files to plain text first if you do not want that.
    """
    data = _read_bytes(path)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Windows Notepad's "Unicode": UTF-16 with a byte-order mark, which makes it unambiguous.
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as err:
            raise CorpusError(f"{path} starts like UTF-16 text but is damaged ({err.reason} at byte "
                              f"{err.start}). Re-save it as UTF-8.") from err
    if data.startswith(b"%PDF-"):
        raise CorpusError(f"{path} is a PDF file with the name ending {path.suffix or '(none)'}: "
                          "rename it to end in .pdf so that its text layer is read.")
    if data.startswith(b"PK\x03\x04"):
        raise CorpusError(f"{path} is a ZIP-based file (an .epub, .docx or .odt?), not text. Rename an "
                          "EPUB to end in .epub; save other documents as plain text (.txt) first.")
    if b"\x00" in data:
        if not data.replace(b"\x00", b"").strip():
            raise _NoText("holds only NUL bytes (a damaged or unfinished file?)", "put text in it or delete it")
        first_nul = data.index(b"\x00")
        raise CorpusError(f"{path} looks like a binary file, not text (a NUL byte at byte {first_nul}). "
                          "Leave it out of the corpus, or save the document as plain text (.txt) first.")
    try:
        return data.decode("utf-8-sig")  # -sig: drop each file's byte-order mark, not just the first's
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}). "
                          "Re-save it as UTF-8 (most editors: 'Save with encoding').") from err


def _read_pdf(path: Path) -> str:
    """The PDF's text layer, page after page, through pypdf (a pure-Python, well-kept reader).

    PDF text comes out as laid out on the page: line breaks inside paragraphs, hyphenated words,
    page numbers and running headers. Look at a sample before training on it.
    """
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError
    except ImportError as err:  # an environment made before PDF support came in
        raise CorpusError(f"Reading {path} needs the `pypdf` package, which is not installed. Run "
                          "`make setup` again (or `pip install pypdf`).") from err
    try:
        reader = PdfReader(path)
        # Many "protected" PDFs only forbid editing and open with an empty password.
        if reader.is_encrypted and not reader.decrypt(""):
            raise CorpusError(f"{path} is password-protected. Save an unprotected copy (open it with "
                              "the password and print or export it to a new PDF) and use that.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except CorpusError:
        raise
    except DependencyError as err:  # AES-encrypted PDFs need the optional `cryptography` package
        raise CorpusError(f"{path} is encrypted and pypdf needs an extra package to open it ({err}). "
                          "Run `pip install cryptography`, or save an unprotected copy of the PDF.") from err
    except Exception as err:  # pypdf raises many kinds for damaged files; all mean the same here
        raise CorpusError(f"{path} could not be read as a PDF ({type(err).__name__}: {err}). The file "
                          "may be damaged or not a PDF: open it in a PDF viewer to check.") from err
    if not any(page.strip() for page in pages):
        raise _NoText(f"has no text layer ({len(pages)} page(s) of images only: a scanned PDF?)",
                      "run OCR on it first (e.g. `ocrmypdf in.pdf out.pdf`) and use the new PDF")
    return "\n".join(pages)


# Block-level XHTML elements: each starts a new paragraph in the extracted text.
_BLOCKS = {"p", "div", "section", "article", "header", "footer", "aside", "blockquote", "pre", "ul", "ol",
           "li", "dl", "dt", "dd", "table", "tr", "figure", "figcaption", "hr",
           "h1", "h2", "h3", "h4", "h5", "h6"}
_INVISIBLE = {"head", "script", "style", "svg"}


class _XHTMLText(HTMLParser):
    """Collects the visible text of one XHTML chapter: paragraphs separated by a blank line (the
    bundled corpus's layout), <br> as a line break, runs of spaces collapsed as a browser does."""

    def __init__(self):
        super().__init__(convert_charrefs=True)  # &amp; &#8217; &nbsp; -> their characters
        self.parts: list[str] = []
        self.hidden = 0   # depth inside <head>, <script>, ...
        self.in_pre = 0   # depth inside <pre>, where line breaks and runs of spaces are kept

    def handle_starttag(self, tag, attrs):
        if tag in _INVISIBLE:
            self.hidden += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            self.in_pre += tag == "pre"

    def handle_endtag(self, tag):
        if tag in _INVISIBLE:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            self.in_pre = max(0, self.in_pre - (tag == "pre"))

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data if self.in_pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self.parts).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _xhtml_to_text(markup: str) -> str:
    parser = _XHTMLText()
    parser.feed(markup)
    parser.close()
    return parser.text()


def _read_epub(path: Path) -> str:
    """The chapters of an EPUB in reading order, as text.

    Written with the standard library instead of a package: an EPUB is a ZIP archive whose
    META-INF/container.xml names one XML file (the OPF) that lists the chapters (XHTML files) in
    reading order; zipfile, xml.etree and html.parser read all of that in a few lines. The
    well-kept EPUB package, ebooklib, would add two dependencies (it needs lxml) and still hand
    back XHTML that has to be turned into text.
    """
    container_ns = "{urn:oasis:names:tc:opendocument:xmlns:container}"
    opf_ns = "{http://www.idpf.org/2007/opf}"
    try:
        with zipfile.ZipFile(path) as book:
            container = ElementTree.fromstring(book.read("META-INF/container.xml"))
            opf_path = container.find(f".//{container_ns}rootfile").get("full-path")
            opf = ElementTree.fromstring(book.read(opf_path))
            hrefs = {item.get("id"): item.get("href") for item in opf.iter(f"{opf_ns}item")}
            folder = posixpath.dirname(opf_path)  # hrefs are relative to the OPF file
            chapters = [posixpath.normpath(posixpath.join(folder, urllib.parse.unquote(hrefs[ref.get("idref")])))
                        for ref in opf.iter(f"{opf_ns}itemref")]
            if "META-INF/encryption.xml" in book.namelist():
                # Publishers' DRM encrypts the chapters (font obfuscation only touches fonts).
                encryption = ElementTree.fromstring(book.read("META-INF/encryption.xml"))
                locked = {ref.get("URI") for ref in encryption.iter() if ref.tag.endswith("CipherReference")}
                if locked & set(chapters):
                    raise CorpusError(f"{path} is protected by DRM (its chapters are encrypted) and cannot "
                                      "be read. Use a DRM-free copy of the book.")
            texts = [_xhtml_to_text(book.read(name).decode("utf-8-sig")) for name in chapters]
    except CorpusError:
        raise
    except (zipfile.BadZipFile, KeyError, AttributeError, ElementTree.ParseError, UnicodeDecodeError,
            OSError, ValueError) as err:
        raise CorpusError(f"{path} could not be read as an EPUB ({type(err).__name__}: {err}). The file "
                          "may be damaged or not an EPUB: open it in an e-book reader to check, or "
                          "export its text as .txt.") from err
    if not any(texts):
        raise _NoText(f"has no text in its {len(chapters)} chapter file(s) (images only?)",
                      "use a copy of the book with text, or export its text as .txt")
    return "\n\n".join(t for t in texts if t)


def _read_document(path: Path) -> str:
    """Pick the reader by the name's ending; anything not .pdf or .epub is read as text."""
    reader = {".pdf": _read_pdf, ".epub": _read_epub}.get(path.suffix.lower(), _read_plain_text)
    text = reader(path)
    if not text.strip():
        what = "is empty" if not text else "holds only whitespace"
        raise _NoText(what, "put text in it or delete it")
    return text


# ---------------------------------------------------------------------------------------------
# Which files a spec names.

def _kind_of_odd_entry(path: Path) -> str:
    if path.is_dir():
        return "a folder, not a file"
    if path.is_symlink():
        return "a broken symbolic link (or a link loop)"
    return "not a regular file (a pipe, socket or device?)"


def _local_files(spec: str) -> tuple[list[Path], list[str]]:
    """The files a path, folder or glob names, in name order, and what was left out (with why)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files, skipped = [], []
        for entry in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
            if entry.is_dir():
                hint = "sub-folders are not read; use a glob like 'folder/**/*.txt'"
                skipped.append(f"{entry}: a folder ({hint})")
            elif entry.suffix.lower() not in FORMAT_SUFFIXES:
                if entry.is_file():
                    skipped.append(f"{entry}: not one of the formats read from a folder ({FORMATS_IN_WORDS})")
            elif entry.is_file():
                files.append(entry)
            else:
                skipped.append(f"{entry}: {_kind_of_odd_entry(entry)}")
        if not files:
            raise CorpusError(f"The folder {path} contains no {FORMATS_IN_WORDS} files. Put your text in it "
                              "or point the corpus parameter at a file or a glob like 'texts/*.txt'."
                              + _listing(" Left out: ", skipped))
        return files, skipped
    if path.is_file():
        return [path], []
    if path.is_symlink():
        raise CorpusError(f"Corpus {spec!r} is a broken symbolic link (or a link loop). Point the link at a "
                          "real file or folder, or use the file's own path.")
    if path.exists():
        raise CorpusError(f"Corpus {spec!r} is {_kind_of_odd_entry(path)}. Use a text file, a folder or a glob.")
    if any(ch in spec for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True))
        if not matches:
            raise CorpusError(f"The pattern {spec!r} matches no files. Check the folder and the pattern.")
        files = [p for p in matches if p.is_file()]
        skipped = [f"{p}: {_kind_of_odd_entry(p)}" for p in matches if not p.is_file()]
        if not files:
            raise CorpusError(f"The pattern {spec!r} matches no files, only: "
                              + _listing("", skipped) + " Change the pattern to match files.")
        return files, skipped
    raise CorpusError(
        f"Corpus {spec!r} not found: no such file or folder. Use 'bundled', a path to a text file, "
        f"a folder or glob of {FORMATS_IN_WORDS} files, 'hf:<dataset id>' or 'url:<address>'."
    )


def _listing(prefix: str, items: list[str], shown: int = 5) -> str:
    if not items:
        return ""
    more = f"; and {len(items) - shown} more" if len(items) > shown else ""
    return prefix + "; ".join(items[:shown]) + more + "."


def _load_files(spec: str, files: list[Path], name: str, licence: str, skipped: list[str] = ()) -> Corpus:
    texts, read, skipped, seen = [], [], list(skipped), {}
    for f in files:
        real = f.resolve()
        if real in seen:  # e.g. a link to another file of the same folder: its text only once
            skipped.append(f"{f}: the same file as {seen[real]}")
            continue
        seen[real] = f
        try:
            texts.append(_read_document(f))
        except _NoText as why:
            no_text = why
            skipped.append(f"{f}: {why.reason} (fix: {why.fix})")
            continue
        read.append(str(f))
    if not texts:
        if len(files) == 1:
            raise CorpusError(f"Corpus {spec!r} has no text: {files[0]} {no_text.reason}. Fix: {no_text.fix} "
                              f"(the course needs at least {MIN_CORPUS_CHARS:,} characters).")
        raise CorpusError(f"Corpus {spec!r} has no text: none of its {len(files)} files holds any. "
                          + _listing("Left out: ", skipped))
    if skipped:
        warnings.warn(CorpusWarning(f"Corpus {spec!r}: read {len(read)} file(s), left out {len(skipped)} "
                                    "(listed in Corpus.skipped and the provenance). "
                                    + _listing("", skipped)), stacklevel=3)
    # Every document ends with a newline and documents are separated by a blank line, so no
    # story's last sentence runs into the next story's title.
    text = clean_text("\n".join(t if t.endswith("\n") else t + "\n" for t in texts))
    return Corpus(text=text, name=name, source=spec, licence=licence, files=read, skipped=skipped)


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


def _downloaded_suffix(data: bytes) -> str:
    """Name a download by what it is, not by its address (which often has no file ending)."""
    if data.startswith(b"%PDF-"):
        return ".pdf"
    if data.startswith(b"PK\x03\x04") and b"application/epub+zip" in data[:200]:
        return ".epub"  # an EPUB's first ZIP entry is its mimetype
    return ".txt"


def _load_url(address: str) -> Corpus:
    # One file per address, named by its hash, so a second run (or an offline run) reuses it.
    stem = f"url-{hashlib.sha256(address.encode()).hexdigest()[:16]}"
    cached = [cache_dir() / (stem + suffix) for suffix in (".txt", ".pdf", ".epub")]
    target = next((path for path in cached if path.exists()), None)
    if target is None:
        try:
            with urllib.request.urlopen(address, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise CorpusError(
                f"Download of {address!r} failed ({err}). If you are offline, download the file by hand "
                f"and save it as {cached[0]} (a PDF or EPUB with the ending .pdf or .epub instead), "
                "or pass its local path as the corpus instead."
            ) from err
        target = cached[0].with_suffix(_downloaded_suffix(data))
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)  # atomic: a half-finished download never looks complete
    return _load_files(f"url:{address}", [target], name=address.rsplit("/", 1)[-1] or address,
                       licence="see the source website")


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
        files, skipped = _local_files(spec)
        corpus = _load_files(spec, files, name=Path(spec).name or spec, licence="your own text",
                             skipped=skipped)
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
