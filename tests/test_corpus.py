import pytest

from course_lib.corpus import CorpusError, clean_text, load_corpus, split_corpus


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_corpus_loads_with_provenance():
    corpus = load_corpus("bundled")
    prov = corpus.provenance()
    assert prov["chars"] == len(corpus.text) > 1000
    assert "CC BY" in prov["licence"] and prov["source"] == "bundled" and prov["files"] >= 1


def test_single_file_folder_and_glob_give_the_same_text(tmp_path, small_text):
    folder = tmp_path / "texts"
    folder.mkdir()
    write(folder / "a.txt", small_text)
    write(folder / "b.txt", small_text.upper())
    by_folder = load_corpus(str(folder))
    by_glob = load_corpus(str(folder / "*.txt"))
    assert by_folder.text == by_glob.text
    assert by_folder.text.startswith(clean_text(small_text).rstrip("\n"))
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
    with pytest.raises(CorpusError, match="no .txt files"):
        load_corpus(str(tmp_path))


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="empty.*Add more text"):
        load_corpus(str(write(tmp_path / "empty.txt", "")))


def test_tiny_file_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="only 12 characters"):
        load_corpus(str(write(tmp_path / "tiny.txt", "hello world\n")))


def test_non_utf8_file_is_explained(tmp_path, small_text):
    path = tmp_path / "latin1.txt"
    path.write_bytes(small_text.encode() + "caf\xe9".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(str(path))


def test_empty_spec():
    with pytest.raises(CorpusError, match="empty"):
        load_corpus("  ")


def test_url_download_failure_says_where_to_put_the_file(tmp_path):
    with pytest.raises(CorpusError, match="save it as .*url-"):
        load_corpus("url:http://127.0.0.1:9/never.txt")  # port 9: nothing listens


def test_url_uses_the_cache_without_network(tmp_path, small_text, monkeypatch):
    import hashlib

    address = "http://127.0.0.1:9/book.txt"
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    name = f"url-{hashlib.sha256(address.encode()).hexdigest()[:16]}.txt"
    write(cache / name, small_text)
    corpus = load_corpus("url:" + address)  # would fail if it touched the network
    assert corpus.text.rstrip("\n") == clean_text(small_text).rstrip("\n")
    assert corpus.source == "url:" + address


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
