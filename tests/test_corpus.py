import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from course_lib.corpus import (CorpusError, CorpusWarning, _downloaded_suffix, clean_text, load_corpus,
                               split_corpus)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ---- small documents built by hand, so the tests need no sample files and no network ----------

def pdf_bytes(pages: list[list[str] | None]) -> bytes:
    """A minimal PDF: each page is a list of text lines (a real text layer in Helvetica) or None
    for a page that only shows an image, as a scanner makes them."""
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: (b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Length 4 >>\nstream\n\x00\xff\xff\x00\nendstream"),
    }
    kids = []
    for i, lines in enumerate(pages):
        content_id, page_id = 5 + 2 * i, 6 + 2 * i
        if lines is None:
            stream = b"q 200 0 0 200 100 400 cm /Im1 Do Q"  # draw the image, no text
        else:
            escaped = [ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for ln in lines]
            stream = ("BT /F1 10 Tf 14 TL 50 750 Td " + " ".join(f"({ln}) Tj T*" for ln in escaped)
                      + " ET").encode("latin-1")
        objects[content_id] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
        objects[page_id] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                            b"/Resources << /Font << /F1 3 0 R >> /XObject << /Im1 4 0 R >> >> >>" % content_id)
        kids.append(b"%d 0 R" % page_id)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out, offsets = bytearray(b"%PDF-1.4\n"), {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in sorted(objects))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def text_pdf(path, small_text, pages=2):
    lines = small_text.splitlines()
    per_page = -(-len(lines) // pages)
    path.write_bytes(pdf_bytes([lines[i:i + per_page] for i in range(0, len(lines), per_page)]))
    return path


def epub_bytes(chapters: dict[str, str], spine: list[str], encrypted: list[str] = ()) -> bytes:
    """A minimal EPUB: chapters {file name: XHTML body}, read in `spine` order."""
    import io

    manifest = "".join(f'<item id="c{i}" href="text/{name}" media-type="application/xhtml+xml"/>'
                       for i, name in enumerate(chapters))
    ids = {name: f"c{i}" for i, name in enumerate(chapters)}
    itemrefs = "".join(f'<itemref idref="{ids[name]}"/>' for name in spine)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:
        book.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr("META-INF/container.xml",
                      '<?xml version="1.0"?><container version="1.0" '
                      'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                      '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                      '</rootfiles></container>')
        book.writestr("OEBPS/content.opf",
                      '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
                      f'<manifest>{manifest}</manifest><spine>{itemrefs}</spine></package>')
        for name, body in chapters.items():
            book.writestr(f"OEBPS/text/{name}",
                          '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                          f"<head><title>Title {name}</title><style>p {{ margin: 0 }}</style></head>"
                          f"<body>{body}</body></html>")
        if encrypted:
            refs = "".join(f'<EncryptedData><CipherData><CipherReference URI="OEBPS/text/{name}"/>'
                           "</CipherData></EncryptedData>" for name in encrypted)
            book.writestr("META-INF/encryption.xml",
                          f'<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container">{refs}</encryption>')
    return buffer.getvalue()


# ---- the basics ------------------------------------------------------------------------------

def test_bundled_corpus_loads_with_provenance():
    corpus = load_corpus("bundled")
    prov = corpus.provenance()
    assert prov["chars"] == len(corpus.text) > 1000
    assert "CC BY" in prov["licence"] and prov["source"] == "bundled" and prov["files"] >= 1
    assert "skipped" not in prov and corpus.skipped == []


def test_single_file_folder_and_glob_give_the_same_text(tmp_path, small_text):
    folder = tmp_path / "texts"
    folder.mkdir()
    write(folder / "a.txt", small_text)
    write(folder / "b.txt", small_text.upper())
    by_folder = load_corpus(str(folder))
    by_glob = load_corpus(str(folder / "*.txt"))
    assert by_folder.text == by_glob.text
    assert by_folder.text == clean_text(small_text) + "\n" + clean_text(small_text.upper())
    assert len(by_folder.files) == 2
    one = load_corpus(str(folder / "a.txt"))
    assert one.text.rstrip("\n") == clean_text(small_text).rstrip("\n")


def test_missing_path_names_the_fix(tmp_path):
    with pytest.raises(CorpusError, match="not found.*'bundled'"):
        load_corpus(str(tmp_path / "nope.txt"))


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(CorpusError, match="matches no files"):
        load_corpus(str(tmp_path / "*.txt"))


def test_empty_folder(tmp_path):
    with pytest.raises(CorpusError, match=r"no \.txt, \.md, \.pdf or \.epub files"):
        load_corpus(str(tmp_path))


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="has no text: .*empty.txt is empty. Fix: put text in it"):
        load_corpus(str(write(tmp_path / "empty.txt", "")))


def test_tiny_file_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="only 12 characters"):
        load_corpus(str(write(tmp_path / "tiny.txt", "hello world\n")))


def test_non_utf8_file_is_explained(tmp_path, small_text):
    path = tmp_path / "latin1.txt"
    path.write_bytes(small_text.encode() + "caf\xe9".encode("latin-1"))
    with pytest.raises(CorpusError, match="latin1.txt is not UTF-8"):
        load_corpus(str(path))


def test_a_non_utf8_file_in_a_folder_is_an_error_not_a_skip(tmp_path, small_text):
    # it holds text the user meant to train on: skipping it would lose that text silently
    write(tmp_path / "a.txt", small_text)
    (tmp_path / "b.txt").write_bytes("caf\xe9 ".encode("latin-1") * 300)
    with pytest.raises(CorpusError, match="b.txt is not UTF-8"):
        load_corpus(str(tmp_path))


def test_utf16_with_byte_order_mark_is_read(tmp_path, small_text):
    path = tmp_path / "notepad.txt"
    path.write_bytes(small_text.encode("utf-16"))  # Python writes the BOM, as Notepad does
    assert load_corpus(str(path)).text == clean_text(small_text)


def test_every_files_byte_order_mark_is_dropped(tmp_path, small_text):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + small_text.encode())
    assert "\ufeff" not in load_corpus(str(tmp_path)).text


def test_empty_spec():
    with pytest.raises(CorpusError, match="empty"):
        load_corpus("  ")


def test_url_download_failure_says_where_to_put_the_file(tmp_path):
    with pytest.raises(CorpusError, match="save it as .*url-"):
        load_corpus("url:http://127.0.0.1:9/never.txt")  # port 9: nothing listens


def test_url_uses_the_cache_without_network(tmp_path, small_text, monkeypatch):
    address = "http://127.0.0.1:9/book.txt"
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    name = f"url-{hashlib.sha256(address.encode()).hexdigest()[:16]}.txt"
    write(cache / name, small_text)
    corpus = load_corpus("url:" + address)  # would fail if it touched the network
    assert corpus.text.rstrip("\n") == clean_text(small_text).rstrip("\n")
    assert corpus.source == "url:" + address


def test_url_cache_holding_a_pdf_is_read_as_a_pdf(tmp_path, small_text):
    address = "http://127.0.0.1:9/download?id=7"  # no file ending in the address
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    text_pdf(cache / f"url-{hashlib.sha256(address.encode()).hexdigest()[:16]}.pdf", small_text)
    assert "WREN: Why does the tide come twice a day, Odo?" in load_corpus("url:" + address).text


def test_downloads_are_named_by_their_content():
    assert _downloaded_suffix(pdf_bytes([["x"]])) == ".pdf"
    assert _downloaded_suffix(epub_bytes({"a.xhtml": "<p>x</p>"}, ["a.xhtml"])) == ".epub"
    assert _downloaded_suffix(b"Chapter 1\n") == ".txt"


def test_hf_offline_failure_is_explained():
    with pytest.raises(CorpusError, match="Hugging Face dataset.*Offline"):
        load_corpus("hf:someone/surely-not-a-dataset-xyz")


def test_cleaning_rules():
    raw = "\ufeffHe said \u201chi\u201d\u2014twice\u2026  \r\nnext\rline"
    assert clean_text(raw) == 'He said "hi"-twice...\nnext\nline'


def test_split_is_contiguous_deterministic_and_80_10_10():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    s = split_corpus(text)
    assert s.train + s.val + s.test == text
    assert s.sizes() == {"train": 800, "val": 100, "test": 100}
    assert split_corpus(text) == s


def test_bad_split_fractions():
    with pytest.raises(ValueError, match="leave room for test"):
        split_corpus("abc" * 100, 0.9, 0.2)


# ---- PDF, Markdown, EPUB ---------------------------------------------------------------------

def test_pdf_text_layer_is_read_page_by_page(tmp_path, small_text):
    corpus = load_corpus(str(text_pdf(tmp_path / "book.pdf", small_text, pages=3)))
    # every line of the source, in order, and nothing else
    assert corpus.text.split() == small_text.split()
    assert corpus.provenance()["files"] == 1


def test_scanned_pdf_says_to_run_ocr(tmp_path):
    path = tmp_path / "scan.pdf"
    path.write_bytes(pdf_bytes([None, None]))
    with pytest.raises(CorpusError, match=r"scan.pdf has no text layer \(2 page\(s\) of images only.*OCR"):
        load_corpus(str(path))


def test_pdf_pages_without_text_are_fine_when_others_have_text(tmp_path, small_text):
    lines = small_text.splitlines()
    path = tmp_path / "book.pdf"
    path.write_bytes(pdf_bytes([None, lines[:40], None, lines[40:]]))  # a cover and a plate
    assert load_corpus(str(path)).text.split() == small_text.split()


def test_password_protected_pdf(tmp_path, small_text):
    from pypdf import PdfReader, PdfWriter

    plain = text_pdf(tmp_path / "plain.pdf", small_text)
    for name, user_password in (("locked.pdf", "secret"), ("owner_only.pdf", "")):
        writer = PdfWriter(clone_from=PdfReader(plain))
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
        writer.write(tmp_path / name)
    with pytest.raises(CorpusError, match="locked.pdf is password-protected. Save an unprotected copy"):
        load_corpus(str(tmp_path / "locked.pdf"))
    # "protected" against editing only: opens with the empty password, like in any PDF viewer
    assert load_corpus(str(tmp_path / "owner_only.pdf")).text.split() == small_text.split()


def test_aes_pdf_without_the_cryptography_package(tmp_path, small_text, monkeypatch):
    import pypdf
    from pypdf.errors import DependencyError

    def needs_cryptography(*args, **kwargs):
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    monkeypatch.setattr(pypdf, "PdfReader", needs_cryptography)
    with pytest.raises(CorpusError, match="pip install cryptography"):
        load_corpus(str(text_pdf(tmp_path / "aes.pdf", small_text)))


def test_pdf_without_pypdf_installed_says_how_to_install_it(tmp_path, small_text, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` fail
    with pytest.raises(CorpusError, match="needs the `pypdf` package.*make setup"):
        load_corpus(str(text_pdf(tmp_path / "book.pdf", small_text)))


@pytest.mark.parametrize("data", [b"%PDF-1.4\nthis is not really a PDF\n", b"", pdf_bytes([["cut"]])[:150]])
def test_damaged_pdf(tmp_path, data):
    path = tmp_path / "broken.pdf"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match="broken.pdf could not be read as a PDF.*open it in a PDF viewer"):
        load_corpus(str(path))


def test_pdf_named_txt_says_rename_it(tmp_path, small_text):
    path = tmp_path / "book.txt"
    path.write_bytes(text_pdf(tmp_path / "x.pdf", small_text).read_bytes())
    with pytest.raises(CorpusError, match=r"book.txt is a PDF file .*rename it to end in \.pdf"):
        load_corpus(str(path))


def test_markdown_is_read_as_text_markup_and_all(tmp_path, small_text):
    path = write(tmp_path / "notes.md", "# Tides\n\n**Bold** and _plain_ words.\n\n" + small_text)
    text = load_corpus(str(path)).text
    assert text.startswith("# Tides\n\n**Bold** and _plain_ words.\n\n")


def test_epub_chapters_in_reading_order_as_paragraphs(tmp_path, small_text):
    long_chapter = "".join(f"<p>{line}</p>\n" for line in small_text.splitlines())
    chapters = {
        "ch2.xhtml": "<h1>Two</h1><p>Second   chapter,\n  one paragraph.</p>",
        "ch1.xhtml": ("<h1>One</h1><p>Tom &amp; Wren&#8217;s <i>boat</i>.</p><p>Line one<br/>line two</p>"
                      "<script>var hidden = 1;</script><div><p>Nested.</p></div>"),
        "ch3.xhtml": long_chapter,
    }
    path = tmp_path / "book.epub"
    path.write_bytes(epub_bytes(chapters, spine=["ch1.xhtml", "ch2.xhtml", "ch3.xhtml"]))
    text = load_corpus(str(path)).text
    assert text.startswith("One\n\nTom & Wren's boat.\n\nLine one\nline two\n\nNested.\n\n"
                           "Two\n\nSecond chapter, one paragraph.\n\n0. WREN:")
    assert "hidden" not in text and "Title" not in text and "margin" not in text


def test_epub_with_drm_or_damage(tmp_path):
    locked = tmp_path / "locked.epub"
    locked.write_bytes(epub_bytes({"a.xhtml": "<p>x</p>"}, ["a.xhtml"], encrypted=["a.xhtml"]))
    with pytest.raises(CorpusError, match="locked.epub is protected by DRM"):
        load_corpus(str(locked))
    not_zip = write(tmp_path / "fake.epub", "just text")
    with pytest.raises(CorpusError, match="fake.epub could not be read as an EPUB.*BadZipFile"):
        load_corpus(str(not_zip))
    no_container = tmp_path / "bare.epub"
    with zipfile.ZipFile(no_container, "w") as book:
        book.writestr("mimetype", "application/epub+zip")
    with pytest.raises(CorpusError, match="bare.epub could not be read as an EPUB.*container.xml"):
        load_corpus(str(no_container))


def test_epub_of_images_only(tmp_path):
    path = tmp_path / "pictures.epub"
    path.write_bytes(epub_bytes({"a.xhtml": '<img src="p.png"/>'}, ["a.xhtml"]))
    with pytest.raises(CorpusError, match="pictures.epub has no text in its 1 chapter file"):
        load_corpus(str(path))


def test_a_folder_may_mix_formats(tmp_path, small_text):
    lines = small_text.splitlines()
    write(tmp_path / "1_story.txt", "\n".join(lines[:20]))
    write(tmp_path / "2_notes.md", "\n".join(lines[20:40]))
    text_pdf(tmp_path / "3_book.pdf", "\n".join(lines[40:60]))
    (tmp_path / "4_book.epub").write_bytes(
        epub_bytes({"a.xhtml": "".join(f"<p>{ln}</p>" for ln in lines[60:])}, ["a.xhtml"]))
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not text")
    write(tmp_path / ".hidden.txt", "editor backup, never read")
    with pytest.warns(CorpusWarning, match="left out 1.*cover.jpg: not one of the formats"):
        corpus = load_corpus(str(tmp_path))
    assert corpus.text.split() == small_text.split()
    assert [Path(f).name for f in corpus.files] == ["1_story.txt", "2_notes.md", "3_book.pdf", "4_book.epub"]
    assert corpus.provenance()["files"] == 4 and len(corpus.provenance()["skipped"]) == 1
    # a glob reads what it matches, of any format
    assert load_corpus(str(tmp_path / "[1-4]_*")).text == corpus.text


# ---- edge cases (issue 18) --------------------------------------------------------------------

def test_a_folder_named_like_a_text_file_is_skipped(tmp_path, small_text):
    write(tmp_path / "a.txt", small_text)
    (tmp_path / "b.txt").mkdir()
    write(tmp_path / "b.txt" / "inner.txt", "not read: sub-folders are not searched")
    for spec in (tmp_path, tmp_path / "*.txt"):
        with pytest.warns(CorpusWarning, match="b.txt: a folder"):
            corpus = load_corpus(str(spec))
        assert [Path(f).name for f in corpus.files] == ["a.txt"]
        assert corpus.provenance()["skipped"][0].startswith(str(tmp_path / "b.txt"))
        assert "not read" not in corpus.text


def test_recursive_glob_reads_sub_folders(tmp_path, small_text):
    (tmp_path / "part1").mkdir()
    write(tmp_path / "part1" / "a.txt", small_text)
    write(tmp_path / "b.txt", small_text.upper())
    corpus = load_corpus(str(tmp_path / "**" / "*.txt"))
    assert sorted(Path(f).name for f in corpus.files) == ["a.txt", "b.txt"]


def test_a_glob_matching_only_folders(tmp_path):
    (tmp_path / "x.txt").mkdir()
    with pytest.raises(CorpusError, match="matches no files, only: .*x.txt: a folder"):
        load_corpus(str(tmp_path / "*.txt"))


@pytest.mark.parametrize("content, reason", [
    (b"", "is empty"),
    (b" \n\t\n" * 500, "holds only whitespace"),
    (b"\x00" * 4096, "holds only NUL bytes"),
])
def test_a_file_without_text_is_skipped_among_good_ones_and_refused_alone(tmp_path, small_text, content, reason):
    write(tmp_path / "a.txt", small_text)
    (tmp_path / "b.txt").write_bytes(content)
    write(tmp_path / "c.txt", small_text)
    with pytest.warns(CorpusWarning, match=f"b.txt: {reason}"):
        corpus = load_corpus(str(tmp_path))
    assert [Path(f).name for f in corpus.files] == ["a.txt", "c.txt"]  # the provenance counts what was read
    assert corpus.provenance()["files"] == 2 and "b.txt" in corpus.provenance()["skipped"][0]
    assert corpus.text == clean_text(small_text) + "\n" + clean_text(small_text)
    with pytest.raises(CorpusError, match=f"has no text: .*b.txt {reason}"):
        load_corpus(str(tmp_path / "b.txt"))


def test_a_folder_of_empty_files_is_refused_with_the_list(tmp_path):
    for name in ("a.txt", "b.txt"):
        write(tmp_path / name, "   \n")
    with pytest.raises(CorpusError, match="none of its 2 files holds any.*a.txt: holds only whitespace"):
        load_corpus(str(tmp_path))


def test_binary_file_named_txt(tmp_path, small_text):
    write(tmp_path / "a.txt", small_text)
    (tmp_path / "b.txt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CorpusError, match="b.txt looks like a binary file.*NUL byte at byte 0"):
        load_corpus(str(tmp_path))
    (tmp_path / "b.txt").write_bytes(b"PK\x03\x04" + b"x" * 100)  # a .docx renamed
    with pytest.raises(CorpusError, match="b.txt is a ZIP-based file"):
        load_corpus(str(tmp_path))


def test_symlink_loop_and_broken_link(tmp_path, small_text):
    write(tmp_path / "a.txt", small_text)
    os.symlink(tmp_path / "loop.txt", tmp_path / "loop.txt")  # points at itself
    os.symlink(tmp_path / "gone.txt", tmp_path / "broken.txt")
    with pytest.warns(CorpusWarning, match="broken.txt: a broken symbolic link"):
        corpus = load_corpus(str(tmp_path))
    assert corpus.files == [str(tmp_path / "a.txt")] and len(corpus.skipped) == 2
    with pytest.raises(CorpusError, match="loop.txt' is a broken symbolic link \\(or a link loop\\)"):
        load_corpus(str(tmp_path / "loop.txt"))


def test_a_link_to_a_file_of_the_same_folder_is_read_once(tmp_path, small_text):
    write(tmp_path / "a.txt", small_text)
    os.symlink(tmp_path / "a.txt", tmp_path / "b.txt")
    with pytest.warns(CorpusWarning, match="b.txt: the same file as .*a.txt"):
        corpus = load_corpus(str(tmp_path))
    assert corpus.text == clean_text(small_text)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_named_pipe_is_never_opened(tmp_path, small_text):
    write(tmp_path / "a.txt", small_text)
    os.mkfifo(tmp_path / "pipe.txt")  # opening it would block for ever
    with pytest.warns(CorpusWarning, match="pipe.txt: not a regular file"):
        assert load_corpus(str(tmp_path)).files == [str(tmp_path / "a.txt")]
    with pytest.raises(CorpusError, match="is not a regular file"):
        load_corpus(str(tmp_path / "pipe.txt"))


def test_unreadable_file_names_the_fix(tmp_path, small_text, monkeypatch):
    path = write(tmp_path / "secret.txt", small_text)
    real_read_bytes = Path.read_bytes

    def no_permission(self):
        if self.name == "secret.txt":  # as a non-root user with chmod 000 would see it
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", no_permission)
    with pytest.raises(CorpusError, match="secret.txt cannot be read: permission denied.*chmod"):
        load_corpus(str(path))


def test_a_folder_with_only_other_formats(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="contains no .*Left out: .*data.csv: not one of the formats"):
        load_corpus(str(tmp_path))
