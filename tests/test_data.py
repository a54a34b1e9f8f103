"""The bundled corpus and the fine-tuning tables: size, originality guards, schemas and splits."""

import collections
import re

import pytest

from course_lib.paths import CORPUS_DIR, DATA_DIR, TASKS_DIR

# Names from existing franchises that must never appear in our original world (word match,
# case-insensitive). Extend this list whenever a writer worries about a borrowing.
FRANCHISE_NAMES = [
    "hogwarts", "gryffindor", "slytherin", "hufflepuff", "ravenclaw", "dumbledore", "voldemort", "hermione",
    "potter", "weasley", "muggle", "muggles", "quidditch", "horcrux", "hagrid", "snape", "azkaban", "diagon",
    "expelliarmus", "lumos", "alohomora", "wingardium", "gandalf", "frodo", "mordor", "hobbit", "hobbits",
    "sauron", "aragorn", "narnia", "aslan", "earthsea", "discworld", "gloomhaven", "lightyear", "jedi", "sith",
    "skywalker", "westeros", "wizard", "wizards", "witchcraft", "wand-maker",
]

CORPUS_FILES = sorted(CORPUS_DIR.glob("*.txt"))
RECURRING = ["Wren", "Odo", "Pell", "Sable", "Varrow", "Helt", "Brisk", "Fennick"]
HALLS = ["Lantern", "Anvil", "Tide", "Thorn"]


def corpus_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in CORPUS_FILES)


def test_corpus_size_between_300_kb_and_2_mb():
    total = sum(p.stat().st_size for p in CORPUS_FILES)
    assert 300_000 <= total <= 2_000_000, total


def test_every_file_is_plain_utf8_ascii_with_a_title():
    for path in CORPUS_FILES:
        text = path.read_bytes().decode("utf-8")  # raises if not UTF-8
        assert text.isascii(), f"{path.name}: non-ASCII characters grow the vocabulary"
        first, second = text.split("\n")[:2]
        assert first.strip() and not second.strip(), f"{path.name}: title line then a blank line"


def test_no_repeated_paragraphs_or_long_lines():
    paragraphs, lines = collections.Counter(), collections.Counter()
    for path in CORPUS_FILES:
        text = path.read_text(encoding="utf-8")
        paragraphs.update(p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 80)
        # short lines ("ODO: Yes.", "(A pause.)") may recur like real dialogue interjections
        lines.update(ln.strip() for ln in text.split("\n") if len(ln.strip()) > 40)
    assert [p[:60] for p, n in paragraphs.items() if n > 1] == []
    assert [ln[:60] for ln, n in lines.items() if n > 1] == []


def test_no_near_copies():
    """No run of 16 words appears in two stories, and no run of 24 words twice in one story
    (a story may call back to one of its own shorter lines): catches templated or recycled text."""
    first_file, repeats = {}, []
    for path in CORPUS_FILES:
        words = re.findall(r"[a-z']+", path.read_text(encoding="utf-8").lower())
        for i in range(len(words) - 15):
            gram = " ".join(words[i:i + 16])
            if first_file.setdefault(gram, path.name) != path.name:
                repeats.append((path.name, first_file[gram], gram))
        long_grams = collections.Counter(" ".join(words[i:i + 24]) for i in range(len(words) - 23))
        repeats += [(path.name, path.name, g) for g, n in long_grams.items() if n > 1]
    assert repeats[:5] == []


def test_no_franchise_names():
    pattern = re.compile(r"\b(" + "|".join(FRANCHISE_NAMES) + r")\b", re.IGNORECASE)
    docs = [*CORPUS_FILES, *TASKS_DIR.glob("*.csv"), DATA_DIR / "WORLD.md", DATA_DIR / "README.md"]
    hits = [(p.name, m.group(0)) for p in docs for m in pattern.finditer(p.read_text(encoding="utf-8"))]
    assert hits == []


def test_world_has_recurring_characters_halls_and_script_dialogue():
    text = corpus_text()
    for name in RECURRING:
        files = sum(1 for p in CORPUS_FILES if name in p.read_text(encoding="utf-8"))
        assert files >= 5, f"{name} recurs in only {files} files"
    for hall in HALLS:
        assert len(re.findall(rf"\b{hall}\b", text)) >= 30, hall
    script = [ln for ln in text.split("\n") if re.match(r"^[A-Z][A-Z' -]+: \S", ln)]
    assert len(script) >= 0.2 * len([ln for ln in text.split("\n") if ln.strip()])
    assert "SCENE:" in text


# ---------------------------------------------------------------- task tables

def load_table(name):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("csv", data_files=str(TASKS_DIR / f"{name}.csv"), split="train")


@pytest.fixture(scope="module")
def tables():
    return {name: load_table(name) for name in ("sorting", "spells", "chat", "spell_lexicon")}


def test_sorting_table(tables):
    t = tables["sorting"]
    assert t.column_names == ["id", "description", "house", "split"]
    assert len(t) >= 400
    assert collections.Counter(t["house"]) == {h: len(t) // 4 for h in HALLS}
    test_rows = collections.Counter(h for h, s in zip(t["house"], t["split"]) if s == "test")
    assert set(t["split"]) == {"train", "test"} and len(set(test_rows.values())) == 1
    assert len(set(t["description"])) == len(t) and len(set(t["id"])) == len(t)
    # the hall must be inferred, not read off: no description names a hall
    assert not [d for d in t["description"] if re.search(r"\b(Lantern|Anvil|Tide|Thorn)\b", d)]


def test_spell_table_follows_the_morphology(tables):
    t, lex = tables["spells"], tables["spell_lexicon"]
    roots = {m for k, m in zip(lex["kind"], lex["morpheme"]) if k == "root"}
    endings = {m for k, m in zip(lex["kind"], lex["morpheme"]) if k == "ending"}
    assert len(roots) == 18 and len(endings) == 11
    assert t.column_names == ["id", "effect", "incantation", "root", "ending", "intensified", "split"]
    assert len(t) >= 200
    for row in t:
        assert row["root"] in roots and row["ending"] in endings, row
        prefix = "ro" if row["intensified"] == "yes" else ""
        assert row["incantation"] == prefix + row["root"] + row["ending"], row


def test_spell_test_split_holds_out_unseen_combinations(tables):
    t = tables["spells"]
    combo = lambda r: (r["root"], r["ending"], r["intensified"])  # noqa: E731
    train = [r for r in t if r["split"] == "train"]
    test = [r for r in t if r["split"] == "test"]
    assert len(test) >= 40
    assert not {combo(r) for r in test} & {combo(r) for r in train}
    train_roots = collections.Counter(r["root"] for r in train)
    train_endings = collections.Counter(r["ending"] for r in train)
    assert all(train_roots[r["root"]] >= 3 and train_endings[r["ending"]] >= 3 for r in test)


def test_chat_table(tables):
    t = tables["chat"]
    assert t.column_names == ["id", "character", "user", "reply", "split"]
    assert len(t) >= 400
    per_character = collections.Counter(t["character"])
    assert len(per_character) >= 6 and min(per_character.values()) >= 40
    assert {c for c, s in zip(t["character"], t["split"]) if s == "test"} == set(per_character)
    assert len(set(t["reply"])) == len(t)
