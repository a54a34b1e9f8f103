"""The web app (course_lib/app.py): API, streaming, validation, concurrency, the fine-tuned tasks,
damaged files, idle connections, reference models."""

import csv
import http.client
import json
import os
import socket
import threading
import time

import pytest
import torch
from werkzeug.serving import make_server

from course_lib import app as app_module
from course_lib.app import (MAX_NEW_TOKENS, MAX_PROMPT_CHARS, MAX_TASK_CHARS, create_app, exposure_notice,
                            make_dev_server, spell_parts)
from course_lib.checkpoints import save_model
from course_lib.finetune import HOUSES, chat_prompt, sorting_prompt, spell_prompt
from course_lib.task_scores import complete, completion_logprob
from course_lib.models import GPT, BigramLM, GPTConfig
from course_lib.models.lstm import LSTMConfig, LSTMLanguageModel
from course_lib.paths import TASKS_DIR
from course_lib.registry import load_model
from course_lib.words import Vocab

PROMPTS = {"bigram": "WREN:", "dropout": "ODO: Moon", "lstm": "the tide"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and parallel requests then do not fight over cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def registry(tmp_path, tokenizer):
    """bigram + tiny GPT (character-level) + tiny LSTM (word-level), and one metadata-only entry."""
    ck = tmp_path / "checkpoints"
    V = tokenizer.vocab_size
    run = {"profile": "smoke", "corpus": "bundled"}
    save_model(ck / "bigram", BigramLM(V), tokenizer, **run)
    cfg = GPTConfig(vocab_size=V, block_size=16, n_embd=16, n_head=2, n_layer=1)
    save_model(ck / "dropout", GPT(cfg), tokenizer, **run)
    vocab = Vocab.from_text("the tide came in and the tide went out\n" * 5, min_freq=1)
    lcfg = LSTMConfig(vocab_size=len(vocab), emb_size=8, hidden_size=8, n_layers=1, tie_weights=True)
    save_model(ck / "lstm", LSTMLanguageModel(lcfg), vocab)
    save_model(ck / "residual", BigramLM(V), tokenizer)
    (ck / "residual.safetensors").unlink()  # metadata only: listed, not usable
    return tmp_path


@pytest.fixture
def app(registry):
    return create_app(registry)


@pytest.fixture
def client(app):
    return app.test_client()


def body(model="dropout", **fields):
    return {"model": model, "prompt": PROMPTS[model], "max_new_tokens": 20, "temperature": 0.9, "seed": 7, **fields}


def read_events(raw: str) -> list[tuple[str, dict]]:
    events = []
    for block in raw.split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- listing and the page ---------------------------------------------------------------------

def test_models_lists_every_checkpoint_with_its_facts(client, tokenizer):
    response = client.get("/api/models")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.get_json()}
    assert set(rows) == {"bigram", "dropout", "lstm", "residual"}
    assert rows["dropout"]["model"] == "GPT" and rows["lstm"]["model"] == "LSTMLanguageModel"
    assert rows["dropout"]["tokenizer"] == "char" and rows["lstm"]["tokenizer"] == "word"
    assert rows["dropout"]["vocab_size"] == tokenizer.vocab_size and rows["dropout"]["block_size"] == 16
    assert rows["dropout"]["profile"] == "smoke" and rows["dropout"]["corpus"] == "bundled"
    assert rows["lstm"]["profile"] is None
    assert all(rows[n]["has_weights"] and rows[n]["parameters"] > 0 for n in ("bigram", "dropout", "lstm"))
    assert rows["residual"]["has_weights"] is False


def test_page_is_served_whole_and_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for element in ('id="model"', 'id="prompt"', 'id="max_new_tokens"', 'id="temperature"', 'id="top_k"',
                    'id="top_p"', 'id="seed"', 'id="generate"', 'id="stop"', 'id="output"', 'id="status"',
                    'id="greedy"', 'id="tab-sorting"', 'id="sorting-description"', 'id="spell-effect"',
                    'id="chat-character"', 'id="chat-message"', 'id="chat-submit"'):
        assert element in html
    assert f'maxlength="{MAX_PROMPT_CHARS}"' in html and f'maxlength="{MAX_TASK_CHARS}"' in html
    assert "$" not in html  # template fully filled
    for asset in ("/static/app.js", "/static/app.css"):
        response = client.get(asset)
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        response.close()
        assert "http://" not in text and "https://" not in text  # no CDN: works offline
    assert "http" not in html.replace('http-equiv', '')


# --- generation -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bigram", "dropout", "lstm"])
def test_generate_each_kind_matches_the_library(client, registry, name):
    response = client.post("/api/generate", json=body(name))
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["model"] == name and data["seed"] == 7 and data["pieces"] > 0
    assert data["text"] == PROMPTS[name] + data["completion"] and len(data["text"]) > len(PROMPTS[name])
    expected = load_model(name, registry).generate(PROMPTS[name], 20, temperature=0.9, seed=7)
    assert data["text"] == expected
    assert client.post("/api/generate", json=body(name)).get_json()["text"] == expected  # seeded: repeatable


def test_sampling_options_are_applied(client):
    greedy_ish = client.post("/api/generate", json=body(top_k=1, seed=1)).get_json()
    assert greedy_ish["text"] == client.post("/api/generate", json=body(top_k=1, seed=2)).get_json()["text"]
    nucleus = client.post("/api/generate", json=body(top_p=0.5, temperature=1.5)).get_json()
    assert nucleus["top_p"] == 0.5 and len(nucleus["completion"]) == 20


def test_an_unseeded_request_reports_its_seed_so_it_can_be_repeated(client):
    first = client.post("/api/generate", json=body(seed=None)).get_json()
    assert isinstance(first["seed"], int)
    again = client.post("/api/generate", json=body(seed=first["seed"])).get_json()
    assert again["text"] == first["text"]


@pytest.mark.parametrize("name", ["dropout", "lstm"])
def test_stream_sends_start_one_event_per_piece_and_done(client, name):
    response = client.post("/api/stream", json=body(name, max_new_tokens=15))
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    events = read_events(response.get_data(as_text=True))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("token") == 15
    assert events[0][1]["seed"] == 7 and events[-1][1]["pieces"] == 15
    streamed = "".join(data["text"] for kind, data in events if kind == "token")
    whole = client.post("/api/generate", json=body(name, max_new_tokens=15)).get_json()
    assert streamed == whole["completion"]


def test_a_bpe_model_streams_whole_characters(tmp_path):
    """GPT-2's tokenizer (setup fetched its table): any text is a valid prompt, pieces are text."""
    cfg = GPTConfig(vocab_size=50257, block_size=16, n_embd=8, n_head=2, n_layer=1)
    save_model(tmp_path / "checkpoints" / "gpt2", GPT(cfg), {"kind": "gpt2-bpe"})
    client = create_app(tmp_path).test_client()
    assert client.get("/api/models").get_json()[0]["vocab_size"] == 50257
    request = {"model": "gpt2", "prompt": "Caf\u00e9 \u2603 WREN:", "max_new_tokens": 12, "seed": 4}
    whole = client.post("/api/generate", json=request).get_json()
    assert whole["text"] == request["prompt"] + whole["completion"] and "\ufffd" not in whole["completion"]
    events = read_events(client.post("/api/stream", json=request).get_data(as_text=True))
    assert "".join(d["text"] for kind, d in events if kind == "token") == whole["completion"]
    too_big = client.post("/api/generate", json={**request, "top_k": 50258})
    assert too_big.status_code == 400 and "from 1 to 50257" in too_big.get_json()["error"]


# --- bad input: 400 with a message naming the field, before any work --------------------------

BAD = [
    ({"model": "nope", "prompt": "W"}, "model", 'unknown model "nope"; available: bigram, dropout, lstm'),
    ({"prompt": "W"}, "model", "model is required"),
    ({"model": 3, "prompt": "W"}, "model", "model is required"),
    ({"model": "residual", "prompt": "W"}, "model", "no weights file; run notebooks/06_residual.ipynb"),
    (body(prompt=""), "prompt", "prompt is empty"),
    ({"model": "dropout"}, "prompt", "prompt is required"),
    (body(prompt=["W"]), "prompt", "must be a string"),
    (body(prompt="W" * (MAX_PROMPT_CHARS + 1)), "prompt", f"at most {MAX_PROMPT_CHARS} allowed"),
    (body(prompt="WREN: \u00e9t\u00e9 \u2603"), "prompt", "2 character(s) are unknown to the character-level model"),
    (body(max_new_tokens=0), "max_new_tokens", f"an integer from 1 to {MAX_NEW_TOKENS}; got 0"),
    (body(max_new_tokens=MAX_NEW_TOKENS + 1), "max_new_tokens", f"from 1 to {MAX_NEW_TOKENS}; got 1001"),
    (body(max_new_tokens=2.5), "max_new_tokens", "must be an integer"),
    (body(max_new_tokens="20"), "max_new_tokens", 'got "20"'),
    (body(max_new_tokens=True), "max_new_tokens", "got true"),
    (body(max_new_tokens=None), "max_new_tokens", "got null"),
    (body(temperature=0), "temperature", "a number > 0"),
    (body(temperature=-1.0), "temperature", "a number > 0"),
    (body(temperature=None), "temperature", "got null"),
    (body(temperature="hot"), "temperature", 'got "hot"'),
    (body(top_k=0), "top_k", "an integer >= 1"),
    (body(top_k=10_000), "top_k", "from 1 to"),
    (body(top_k=2.5), "top_k", "got 2.5"),
    (body(top_k="5"), "top_k", "integer"),
    (body(top_p=0), "top_p", "a number from 1e-06 to 1"),
    (body(top_p=1e-300), "top_p", "anything smaller keeps only the most likely token: use greedy"),
    (body(top_p=1.5), "top_p", "a number from 1e-06 to 1"),
    (body(top_p="x"), "top_p", "a number from 1e-06 to 1"),
    (body(greedy="yes"), "greedy", 'greedy must be true or false; got "yes"'),
    (body(greedy=1), "greedy", "greedy must be true or false"),
    (body(greedy=True), "temperature", "temperature does not apply with greedy"),
    (body(greedy=True, temperature=None, top_k=3), "top_k", "top_k does not apply with greedy"),
    (body(greedy=True, temperature=None, top_p=0.9), "top_p", "top_p does not apply with greedy"),
    (body(seed=-1), "seed", "an integer from 0 to"),
    (body(seed="abc"), "seed", "an integer from 0 to"),
    (body(seed=1.5), "seed", "got 1.5"),
    (body(temprature=0.5), "temprature", 'Unknown field(s) "temprature"; allowed: model, prompt'),
    (body(temperature=10**400), "temperature", "a number > 0"),
    (body(top_k=10**400), "top_k", "got 1000000000000000000000000000000000000000..."),
    (["dropout", "WREN:"], None, "must be a JSON object"),
]


@pytest.mark.parametrize("endpoint", ["/api/generate", "/api/stream"])
@pytest.mark.parametrize("payload, field, message", BAD, ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD)])
def test_bad_input_is_400_naming_the_field(app, client, endpoint, payload, field, message):
    response = client.post(endpoint, json=payload)
    assert response.status_code == 400 and response.mimetype == "application/json"
    error = response.get_json()
    assert message in error["error"], error
    assert error.get("field") == field
    assert app.extensions["course_app"]["cache"].loaded_names() == []  # checked before loading anything


@pytest.mark.parametrize("raw", [b"{not json", b"", b"prompt=WREN",
                                 b'{"model": "dropout", "prompt": "W", "temperature": NaN}',
                                 b'{"model": "dropout", "prompt": "W", "temperature": Infinity}'])
def test_a_body_that_is_not_valid_json_is_400(client, raw):
    response = client.post("/api/generate", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.get_json()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_sent_as_json_is_400(client, content_type):
    # (also keeps other web sites from driving the app: they cannot send JSON without a preflight)
    response = client.post("/api/stream", data=json.dumps(body()), content_type=content_type)
    assert response.status_code == 400 and "Content-Type: application/json" in response.get_json()["error"]


def test_top_k_is_checked_against_the_word_vocabulary(client):
    response = client.post("/api/generate", json=body("lstm", top_k=500))
    assert response.status_code == 400 and "vocabulary size of 'lstm'" in response.get_json()["error"]


def test_http_errors_on_the_api_are_json(client):
    assert client.get("/api/generate").status_code == 405
    assert "Method Not Allowed" in client.get("/api/generate").get_json()["error"]
    assert client.get("/api/nothing").get_json()["error"].startswith("404")
    huge = client.post("/api/generate", data=b"x" * (app_module.MAX_BODY_BYTES + 1), content_type="application/json")
    assert huge.status_code == 413 and "error" in huge.get_json()


# --- failures are contained -------------------------------------------------------------------

def test_an_unexpected_error_is_a_short_500_and_the_server_goes_on(app, client, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(app_module.registry, "load_model", broken)
    response = client.post("/api/generate", json=body())
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal error (RuntimeError); the server log has the details."}
    assert "disk on fire" in caplog.text  # logged, not sent
    monkeypatch.undo()
    assert client.post("/api/generate", json=body()).status_code == 200


def test_a_refusal_from_the_library_is_still_a_400(app, client, monkeypatch):
    # parse_request normally catches everything first; the library's own checks are the safety net
    monkeypatch.setattr(app_module, "check_for_model", lambda *args: None)
    response = client.post("/api/generate", json=body(prompt="\u00e9t\u00e9"))
    assert response.status_code == 400 and "not in the vocabulary" in response.get_json()["error"]


@pytest.mark.filterwarnings("ignore:skipping")
def test_a_corrupt_checkpoint_is_refused_by_name_and_the_others_still_work(registry, client):
    (registry / "checkpoints" / "bigram.safetensors").write_bytes(b"junk")
    response = client.post("/api/generate", json=body("bigram"))
    assert response.status_code == 400 and "damaged" in response.get_json()["error"]
    assert client.post("/api/generate", json=body("dropout")).status_code == 200


def test_a_failure_mid_stream_ends_with_an_error_event(app, client):
    loaded = app.extensions["course_app"]["cache"].get("dropout")
    real_stream = loaded.stream

    def failing(*args, **kwargs):
        pieces = real_stream(*args, **kwargs)
        yield next(pieces)
        raise RuntimeError("boom")

    loaded.stream = failing
    events = read_events(client.post("/api/stream", json=body()).get_data(as_text=True))
    assert [kind for kind, _ in events] == ["start", "token", "error"]
    assert "RuntimeError" in events[-1][1]["error"]
    assert app.extensions["course_app"]["stats"].snapshot()["failed"] == 1


# --- models are cached ------------------------------------------------------------------------

def test_each_model_is_loaded_once_even_under_concurrent_first_use(app, monkeypatch):
    calls = []
    real_load = app_module.registry.load_model

    def slow_load(*args, **kwargs):
        calls.append(args[0])
        time.sleep(0.2)  # a wide window for a second load to slip in, if the lock did not stop it
        return real_load(*args, **kwargs)

    monkeypatch.setattr(app_module.registry, "load_model", slow_load)
    results = run_together([lambda: app.test_client().post("/api/generate", json=body()).status_code] * 6)
    assert results == [200] * 6 and calls == ["dropout"]


def test_a_rewritten_checkpoint_is_reloaded(client, registry, tokenizer):
    assert client.post("/api/generate", json=body("bigram")).status_code == 200  # loaded and cached
    retrained = BigramLM(tokenizer.vocab_size)
    with torch.no_grad():
        retrained.table.weight[:, tokenizer.stoi["O"]] = 50.0  # now it only ever writes "O"
    path = save_model(registry / "checkpoints" / "bigram", retrained, tokenizer)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime, however coarse the clock
    assert client.post("/api/generate", json=body("bigram")).get_json()["completion"] == "O" * 20


# --- concurrency ------------------------------------------------------------------------------

def run_together(jobs, timeout=60):
    """Start every job at the same moment (a barrier) on its own thread; their results in order."""
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def worker(i, job):
        try:
            barrier.wait()
            results[i] = job()
        except Exception as err:  # noqa: BLE001 -- reported by the assert below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not errors and not any(t.is_alive() for t in threads), errors
    return results


def concurrent_requests():
    """A mix over every model, both endpoints, several seeds and settings."""
    return [(endpoint, body(name, seed=seed, max_new_tokens=30, **extra))
            for name in ("bigram", "dropout", "lstm") for seed in (1, 2)
            for endpoint, extra in (("/api/generate", {}), ("/api/stream", {"top_k": 5, "top_p": 0.9}))]


def text_of(endpoint, raw: str) -> str:
    if endpoint == "/api/generate":
        return json.loads(raw)["text"]
    events = read_events(raw)
    assert events[-1][0] == "done", events[-1]
    return "".join(data["text"] for kind, data in events if kind == "token")


def test_concurrent_requests_each_get_the_text_they_get_alone(app):
    requests = concurrent_requests()
    alone = [text_of(ep, app.test_client().post(ep, json=b).get_data(as_text=True)) for ep, b in requests]

    def job(endpoint, payload):
        response = app.test_client().post(endpoint, json=payload)
        assert response.status_code == 200
        return text_of(endpoint, response.get_data(as_text=True))

    together = run_together([lambda ep=ep, b=b: job(ep, b) for ep, b in requests])
    assert together == alone
    assert len(set(alone)) > len(alone) // 2  # the requests really differ from one another


@pytest.fixture
def server(app):
    """The app on the real threaded HTTP server that main() starts, 127.0.0.1, a free port."""
    srv = make_dev_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def http_post(port, path, payload, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def test_concurrent_requests_over_real_http(app, server):
    requests = concurrent_requests()
    alone = [text_of(ep, app.test_client().post(ep, json=b).get_data(as_text=True)) for ep, b in requests]

    def job(endpoint, payload):
        conn, response = http_post(server.server_port, endpoint, payload)
        try:
            assert response.status == 200
            return text_of(endpoint, response.read().decode("utf-8"))
        finally:
            conn.close()

    assert run_together([lambda ep=ep, b=b: job(ep, b) for ep, b in requests]) == alone


def test_a_client_that_disconnects_stops_the_generation(app, server):
    """Stop in the page aborts the fetch: the server must notice and close the model's generator."""
    loaded = app.extensions["course_app"]["cache"].get("dropout")
    real_stream, produced, closed = loaded.stream, [], threading.Event()

    def slow_stream(*args, **kwargs):  # ~100 pieces a second, so the client leaves mid-way
        try:
            for piece in real_stream(*args, **kwargs):
                time.sleep(0.01)
                produced.append(piece)
                yield piece
        finally:
            closed.set()

    loaded.stream = slow_stream
    conn, response = http_post(server.server_port, "/api/stream", body(max_new_tokens=MAX_NEW_TOKENS))
    assert response.status == 200
    seen = 0
    while seen < 5:  # read a few events, then hang up
        if response.readline().startswith(b"event: token"):
            seen += 1
    response.close()
    conn.close()
    assert closed.wait(10), "the generator was not closed after the client left"
    assert len(produced) < MAX_NEW_TOKENS / 2
    stats = app.extensions["course_app"]["stats"]
    deadline = time.time() + 5
    while stats.snapshot()["active"] and time.time() < deadline:
        time.sleep(0.01)
    assert stats.snapshot() == {"active": 0, "done": 0, "cancelled": 1, "failed": 0}


# --- command line -----------------------------------------------------------------------------

def test_the_server_binds_localhost_unless_told_and_warns_when_exposed():
    assert app_module.build_parser().parse_args([]).host == "127.0.0.1"
    local = exposure_notice("127.0.0.1", 8000)
    assert "--host 0.0.0.0" in local and "WARNING" not in local
    assert exposure_notice("0.0.0.0", 8000).startswith("WARNING")


def test_main_reports_a_busy_port_in_one_line(registry, capsys):
    with make_server("127.0.0.1", 0, create_app(registry)) as busy:
        code = app_module.main(["--port", str(busy.server_port), "--output-dir", str(registry)])
    assert code == 2 and "cannot listen on 127.0.0.1" in capsys.readouterr().err


# --- sampling: greedy, and extreme values are a 200 or a 400, never a 500 ----------------------

@pytest.mark.parametrize("name", ["bigram", "dropout", "lstm"])
def test_greedy_needs_no_temperature_and_takes_the_most_likely_token(client, registry, name):
    response = client.post("/api/generate", json={"model": name, "prompt": PROMPTS[name], "max_new_tokens": 12,
                                                  "greedy": True})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["greedy"] is True and data["temperature"] is None and data["top_k"] is None
    # the same text whatever the seed, and the same as sampling from the single best token
    again = client.post("/api/generate", json={"model": name, "prompt": PROMPTS[name], "max_new_tokens": 12,
                                               "greedy": True, "seed": 99}).get_json()
    assert again["text"] == data["text"]
    expected = load_model(name, registry).generate(PROMPTS[name], 12, temperature=1.0, top_k=1, seed=5)
    assert data["text"] == expected
    events = read_events(client.post("/api/stream", json={"model": name, "prompt": PROMPTS[name],
                                                          "max_new_tokens": 12, "greedy": True}).get_data(as_text=True))
    assert "".join(d["text"] for kind, d in events if kind == "token") == data["completion"]


def test_greedy_in_a_character_model_is_the_argmax(client, registry):
    """Greedy by the definition: each new character is the argmax of the model's logits."""
    loaded = load_model("dropout", registry)
    ids = loaded.tokenizer.encode(PROMPTS["dropout"])
    with torch.no_grad():
        for _ in range(8):
            logits = loaded.model(torch.tensor([ids[-16:]]))[0, -1]
            ids.append(int(torch.argmax(logits)))
    data = client.post("/api/generate", json={"model": "dropout", "prompt": PROMPTS["dropout"],
                                              "max_new_tokens": 8, "greedy": True}).get_json()
    assert data["text"] == loaded.tokenizer.decode(ids)


EXTREME = [{"temperature": 1e-30}, {"temperature": 1e-6}, {"temperature": 1e6}, {"temperature": 1e30},
           {"temperature": 1e308}, {"temperature": 5e-324}, {"temperature": 10**300}, {"top_p": 1e-300},
           {"top_p": 5e-324}, {"top_p": 1e-6}, {"top_p": 1.0}, {"top_k": 1}, {"top_k": 1, "top_p": 1e-6},
           {"temperature": 1e-6, "top_k": 1, "top_p": 1e-6}, {"seed": 0}, {"seed": 2**32 - 1},
           {"max_new_tokens": 1}, {"prompt": "W" * MAX_PROMPT_CHARS}]


@pytest.mark.filterwarnings("ignore:The prompt has")
@pytest.mark.parametrize("name", ["bigram", "dropout", "lstm"])
@pytest.mark.parametrize("extreme", EXTREME, ids=[json.dumps(e)[:40] for e in EXTREME])
def test_extreme_but_finite_values_are_answered_or_refused_never_a_500(client, name, extreme):
    payload = body(name, **{"max_new_tokens": 5, **extreme})
    if "prompt" in extreme and name == "lstm":
        payload["prompt"] = "the " * (MAX_PROMPT_CHARS // 4)
    for endpoint in ("/api/generate", "/api/stream"):
        response = client.post(endpoint, json=payload)
        assert response.status_code in (200, 400), response.get_data(as_text=True)
        if response.status_code == 400:
            error = response.get_json()
            assert error["field"] in extreme and "must be" in error["error"], error
        elif endpoint == "/api/stream":
            assert read_events(response.get_data(as_text=True))[-1][0] == "done"
        else:
            assert response.get_json()["pieces"] > 0


def test_extreme_temperatures_give_their_limits_greedy_and_uniform(client, registry):
    """A tiny temperature is greedy (course_lib.generation keeps it exact), a huge one uniform."""
    greedy = client.post("/api/generate", json=body(greedy=True, temperature=None)).get_json()
    for tiny in (1e-30, 5e-324):
        assert client.post("/api/generate", json=body(temperature=tiny)).get_json()["text"] == greedy["text"]
    uniform = [client.post("/api/generate", json=body(temperature=1e300, seed=s, max_new_tokens=50)).get_json()
               for s in range(3)]
    assert len({u["text"] for u in uniform}) == 3  # every character possible: three seeds, three texts


# --- one damaged file never takes the app down -------------------------------------------------

def _safetensors_with_meta(path, meta, tensors=None):
    from safetensors.torch import save_file

    save_file(tensors or {"x": torch.zeros(1)}, str(path), metadata={"course_meta": json.dumps(meta)})


@pytest.fixture
def damaged_registry(registry, tokenizer):
    """The good registry plus one file of each kind of damage. Returns {name: how it is damaged}."""
    ck = registry / "checkpoints"
    V = tokenizer.vocab_size
    cfg = GPTConfig(vocab_size=V, block_size=16, n_embd=16, n_head=2, n_layer=1)
    (ck / "list_json.json").write_text("[1, 2, 3]", encoding="utf-8")
    (ck / "string_json.json").write_text('"a checkpoint"', encoding="utf-8")
    (ck / "not_utf8.json").write_bytes(b'{"model": "GPT", "corpus": "caf\xe9 \xff\xfe"}')
    (ck / "not_json.json").write_text("{model: GPT,", encoding="utf-8")
    (ck / "odd_types.json").write_text(json.dumps({"model": 5, "tokenizer": "char", "config": [1, 2],
                                                   "parameters": "many", "corpus": {"a": 1}}), encoding="utf-8")
    (ck / "junk.safetensors").write_bytes(b"junk")
    (ck / "empty.safetensors").write_bytes(b"")
    (ck / "a_folder.safetensors").mkdir()
    truncated = save_model(ck / "truncated", GPT(cfg), tokenizer)
    truncated.write_bytes(truncated.read_bytes()[:-200])  # the header is intact, the tensors are cut short
    _safetensors_with_meta(ck / "meta_is_a_list.safetensors", [1, 2])
    _safetensors_with_meta(ck / "unknown_kind.safetensors", {"model": "Transformer9000", "config": {},
                                                              "tokenizer": tokenizer.to_dict()})
    _safetensors_with_meta(ck / "wrong_tensors.safetensors", {"model": "GPT", "config": cfg.as_dict(),
                                                               "tokenizer": tokenizer.to_dict()})
    _safetensors_with_meta(ck / "bad_config.safetensors", {"model": "GPT", "config": {**cfg.as_dict(), "n_head": 3},
                                                            "tokenizer": tokenizer.to_dict()})
    bigram = BigramLM(V)
    _safetensors_with_meta(ck / "bad_tokenizer.safetensors",
                           {"model": "BigramLM", "config": {"vocab_size": V}, "tokenizer": {"kind": "char", "chars": 7}},
                           {k: v.contiguous() for k, v in bigram.state_dict().items()})
    _safetensors_with_meta(ck / "no_tokenizer.safetensors", {"model": "BigramLM", "config": {"vocab_size": V}},
                           {k: v.contiguous() for k, v in bigram.state_dict().items()})
    diverged = GPT(cfg)
    with torch.no_grad():
        diverged.lm_head.weight[3, 1] = float("nan")
    save_model(ck / "nan_weights", diverged, tokenizer)
    return registry


DAMAGED_WHEN_LISTED = ["list_json", "string_json", "not_utf8", "not_json", "junk", "empty", "a_folder",
                       "meta_is_a_list", "truncated"]
DAMAGED_WHEN_LOADED = ["unknown_kind", "wrong_tensors", "bad_config", "bad_tokenizer",
                       "no_tokenizer", "nan_weights"]


@pytest.mark.filterwarnings("ignore:skipping")
def test_damaged_files_are_listed_as_broken_and_the_good_models_keep_answering(damaged_registry, capsys):
    app = create_app(damaged_registry)  # start-up survives them
    client = app.test_client()
    listed = client.get("/api/models")
    assert listed.status_code == 200
    rows = {row["name"]: row for row in listed.get_json()}
    assert set(DAMAGED_WHEN_LISTED + DAMAGED_WHEN_LOADED) | {"bigram", "dropout", "lstm", "residual"} <= set(rows)
    for name in DAMAGED_WHEN_LISTED:
        assert rows[name]["broken"] and not rows[name]["ready"], rows[name]
    odd = rows["odd_types"]  # readable metadata with nonsense in it: shown as far as it makes sense
    assert odd["model"] == "5" and odd["parameters"] is None and odd["tokenizer"] is None and not odd["ready"]
    for name in DAMAGED_WHEN_LISTED + DAMAGED_WHEN_LOADED + ["odd_types"]:
        for endpoint in ("/api/generate", "/api/stream"):
            response = client.post(endpoint, json={"model": name, "prompt": "WREN:", "max_new_tokens": 3})
            assert response.status_code == 400, (name, response.get_data(as_text=True))
            assert response.get_json()["field"] == "model"
        # the good models are not disturbed by the failed attempt
        assert client.post("/api/generate", json=body("dropout")).status_code == 200
    # files that only failed when loaded are now listed as broken too, with the reason
    rows = {row["name"]: row for row in client.get("/api/models").get_json()}
    for name in DAMAGED_WHEN_LOADED:
        assert rows[name]["broken"] and not rows[name]["ready"], rows[name]
    assert "NaN" in rows["nan_weights"]["broken"] and "Transformer9000" in rows["unknown_kind"]["broken"]
    assert rows["dropout"]["ready"] and rows["dropout"]["broken"] is None
    for name in ("bigram", "dropout", "lstm"):
        assert client.post("/api/stream", json=body(name)).status_code == 200
    assert client.get("/").status_code == 200


@pytest.mark.filterwarnings("ignore:skipping")
def test_a_damaged_file_that_is_replaced_loads_again(registry, tokenizer):
    client = create_app(registry).test_client()
    weights = save_model(registry / "checkpoints" / "bigram", BigramLM(tokenizer.vocab_size), tokenizer)
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "damaged" in client.post("/api/generate", json=body("bigram")).get_json()["error"]
    assert "damaged" in client.post("/api/generate", json=body("bigram")).get_json()["error"]  # remembered
    save_model(registry / "checkpoints" / "bigram", BigramLM(tokenizer.vocab_size), tokenizer)
    assert client.post("/api/generate", json=body("bigram")).status_code == 200
    row = next(r for r in client.get("/api/models").get_json() if r["name"] == "bigram")
    assert row["ready"] and row["broken"] is None


@pytest.mark.filterwarnings("ignore:skipping")
def test_the_server_starts_and_serves_beside_damaged_files(damaged_registry, monkeypatch, capsys):
    """main() itself, over real HTTP: start-up lists the damage, the page and a good model work."""
    from werkzeug.serving import BaseWSGIServer

    started, real_serve_forever = {}, BaseWSGIServer.serve_forever  # (the patched name would call itself)

    def serve_in_background(self):
        threading.Thread(target=real_serve_forever, args=(self,), daemon=True).start()
        conn = http.client.HTTPConnection("127.0.0.1", self.server_port, timeout=30)
        conn.request("GET", "/api/models")
        started["models"] = conn.getresponse().status
        conn.close()
        started["generate"] = http_post(self.server_port, "/api/generate", body())[1].status
        self.shutdown()

    monkeypatch.setattr(BaseWSGIServer, "serve_forever", serve_in_background)
    assert app_module.main(["--port", "0", "--output-dir", str(damaged_registry)]) == 0
    out = capsys.readouterr().out
    ready, damaged = out.splitlines()[:2]
    assert "bigram, dropout, lstm" in ready and "residual" not in ready
    assert damaged.startswith("damaged, skipped: a_folder, empty, junk, list_json")
    assert started["models"] == 200 and started["generate"] == 200


# --- the fine-tuned tasks -----------------------------------------------------------------------

@pytest.fixture
def task_registry(tmp_path):
    """Tiny random GPTs with GPT-2's tokenizer: the answers are nonsense, the plumbing is real.
    finetuned: "tasks" in its metadata; from_finetune: finetune.finetune's "finetune_config";
    spell_only: declares one task; base: plain GPT-2 (no tasks)."""
    ck = tmp_path / "task_models" / "checkpoints"
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50257, block_size=96, n_embd=8, n_head=2, n_layer=1)
    bpe = {"kind": "gpt2-bpe"}
    save_model(ck / "finetuned", GPT(cfg), bpe, tasks=["sorting", "spell", "chat"], profile="smoke")
    save_model(ck / "from_finetune", GPT(cfg), bpe, finetune_config={"max_steps": 1})
    save_model(ck / "spell_only", GPT(cfg), bpe, tasks=["spell"])
    save_model(ck / "base", GPT(cfg), bpe)
    return tmp_path / "task_models"


@pytest.fixture
def task_client(task_registry):
    return create_app(task_registry).test_client()


def test_models_say_which_tasks_they_offer(task_client, client):
    rows = {row["name"]: row for row in task_client.get("/api/models").get_json()}
    assert rows["finetuned"]["tasks"] == ["sorting", "spell", "chat"]
    assert rows["from_finetune"]["tasks"] == ["sorting", "spell", "chat"]
    assert rows["spell_only"]["tasks"] == ["spell"] and rows["base"]["tasks"] == []
    assert all(row["tasks"] == [] for row in client.get("/api/models").get_json())  # character/word models


def test_the_task_lists_come_from_the_task_tables(task_client):
    data = task_client.get("/api/tasks").get_json()
    with (TASKS_DIR / "chat.csv").open(encoding="utf-8", newline="") as f:
        characters = sorted({row["character"] for row in csv.DictReader(f)})
    assert data["characters"] == characters and len(characters) == 8
    assert data["halls"] == list(HOUSES)
    kinds = {entry["kind"] for entry in data["lexicon"]}
    assert kinds == {"prefix", "root", "ending"} and {"morpheme": "ro", "kind": "prefix"}.items() <= next(
        e for e in data["lexicon"] if e["kind"] == "prefix").items()


def test_sorting_gives_a_hall_and_each_halls_probability(task_client, task_registry):
    description = "Mira  fixed the broken\nwater pump before anyone asked."
    response = task_client.post("/api/task/sorting", json={"model": "finetuned", "description": description})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    clean = "Mira fixed the broken water pump before anyone asked."
    assert data["description"] == clean and data["prompt"] == sorting_prompt(clean)
    probabilities = data["probabilities"]
    assert list(probabilities) == list(HOUSES) and abs(sum(probabilities.values()) - 1) < 1e-3
    assert data["hall"] == max(probabilities, key=probabilities.get)
    # the scores are the library's log-likelihoods of each whole answer, softmaxed
    loaded = load_model("finetuned", task_registry)
    expected = torch.tensor([completion_logprob(loaded.model, loaded.tokenizer, sorting_prompt(clean), f" {h}")
                             for h in HOUSES])
    assert [data["log_likelihoods"][h] for h in HOUSES] == pytest.approx(expected.tolist(), abs=1e-3)
    assert [probabilities[h] for h in HOUSES] == pytest.approx(torch.softmax(expected, 0).tolist(), abs=1e-3)


def test_spell_gives_the_models_greedy_word_and_its_parts(task_client, task_registry):
    response = task_client.post("/api/task/spell", json={"model": "finetuned", "effect": "open the stuck gate"})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["prompt"] == spell_prompt("open the stuck gate")
    loaded = load_model("finetuned", task_registry)
    assert data["incantation"] == complete(loaded.model, loaded.tokenizer, data["prompt"], 8).split(" ")[0]
    assert " " not in data["incantation"] and "\n" not in data["incantation"]
    assert data["parts"] is None or "".join(p["morpheme"] for p in data["parts"]) == data["incantation"]


def test_chat_answers_as_the_chosen_character(task_client, task_registry):
    response = task_client.post("/api/task/chat", json={"model": "finetuned", "character": "Wren",
                                                        "message": "Where is the library?"})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["character"] == "Wren" and data["prompt"] == chat_prompt("Wren", "Where is the library?")
    loaded = load_model("finetuned", task_registry)
    assert data["reply"] == complete(loaded.model, loaded.tokenizer, data["prompt"], 80)
    assert "\n" not in data["reply"]
    again = task_client.post("/api/task/chat", json={"model": "finetuned", "character": "Wren",
                                                     "message": "Where is the library?"}).get_json()
    assert again["reply"] == data["reply"]  # greedy: the same answer every time


def test_a_model_declaring_some_tasks_offers_only_those(task_client):
    assert task_client.post("/api/task/spell", json={"model": "spell_only", "effect": "dry the socks"}).status_code == 200
    refused = task_client.post("/api/task/sorting", json={"model": "spell_only", "description": "Kind."})
    assert refused.status_code == 400
    assert refused.get_json() == {"field": "model", "error": ("model: 'spell_only' was not fine-tuned on the sorting "
                                                              "task; models that offer it: finetuned, from_finetune.")}


def task_body(task, **fields):
    base = {"sorting": {"description": "Kind to everyone."}, "spell": {"effect": "dry the socks"},
            "chat": {"character": "Odo", "message": "Hello."}}[task]
    return {"model": "finetuned", **base, **fields}


BAD_TASK = [
    ("sorting", task_body("sorting", model="base"), "model", ("'base' was not fine-tuned on the sorting task; "
                                                              "models that offer it: finetuned, from_finetune")),
    ("sorting", task_body("sorting", model="nope"), "model", 'unknown model "nope"'),
    ("sorting", {"description": "Kind."}, "model", "model is required"),
    ("sorting", task_body("sorting", description=""), "description", "description is empty"),
    ("sorting", task_body("sorting", description=" \n\t "), "description", "description is empty"),
    ("sorting", task_body("sorting", description=None), "description", "description is required"),
    ("sorting", task_body("sorting", description=["a"]), "description", "must be a string"),
    ("sorting", task_body("sorting", description="a" * (MAX_TASK_CHARS + 1)), "description",
     f"at most {MAX_TASK_CHARS} allowed"),
    ("sorting", task_body("sorting", prompt="[SORTING] x"), "prompt",
     'Unknown field(s) "prompt"; allowed: model, description'),
    ("spell", task_body("spell", effect=3), "effect", "effect is required and must be a string"),
    ("spell", task_body("spell", description="x"), "description", "allowed: model, effect"),
    ("chat", task_body("chat", character="Nobody"), "character", ("character must be one of Brisk, Fennick, Helt, "
                                                                  'Odo, Pell, Sable, Varrow, Wren; got "Nobody"')),
    ("chat", task_body("chat", character="wren"), "character", "character must be one of"),
    ("chat", task_body("chat", character=None), "character", "got null"),
    ("chat", task_body("chat", message=""), "message", "message is empty"),
    ("chat", task_body("chat", temperature=0.5), "temperature", "allowed: model, character, message"),
    ("chat", ["Odo", "Hello"], None, "must be a JSON object"),
]


@pytest.mark.parametrize("task, payload, field, message", BAD_TASK, ids=[f"{t}-{f}-{i}" for i, (t, _, f, _) in
                                                                         enumerate(BAD_TASK)])
def test_bad_task_input_is_400_naming_the_field_before_any_work(task_registry, task, payload, field, message):
    app = create_app(task_registry)
    response = app.test_client().post(f"/api/task/{task}", json=payload)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()
    assert message in error["error"], error
    assert error.get("field") == field
    assert app.extensions["course_app"]["cache"].loaded_names() == []


def test_concurrent_task_requests_each_get_the_answer_they_get_alone(task_registry):
    app = create_app(task_registry)
    jobs = [(task, task_body(task, **extra)) for task, extra in (
        ("sorting", {}), ("sorting", {"description": "Never late, never early."}), ("spell", {}),
        ("spell", {"effect": "warm the soup"}), ("chat", {}), ("chat", {"character": "Sable"}))]
    answer_keys = {"sorting": "probabilities", "spell": "incantation", "chat": "reply"}

    def ask(task, payload):
        response = app.test_client().post(f"/api/task/{task}", json=payload)
        assert response.status_code == 200
        return response.get_json()[answer_keys[task]]

    alone = [ask(task, payload) for task, payload in jobs]
    assert run_together([lambda t=t, b=b: ask(t, b) for t, b in jobs]) == alone


def test_a_task_input_too_long_for_the_models_context_is_refused(task_client):
    # 96 tokens of context: a description of 500 characters does not fit with the prefix
    response = task_client.post("/api/task/sorting", json=task_body("sorting", description="an ox " * 80))
    assert response.status_code == 400
    error = response.get_json()
    assert error["field"] == "description" and "reads at most 96 tokens" in error["error"]


def test_task_requests_need_json_and_a_known_task(task_client):
    assert task_client.post("/api/task/sorting", data="x", content_type="text/plain").status_code == 400
    unknown = task_client.post("/api/task/poetry", json=task_body("sorting"))
    assert unknown.status_code == 404 and "the tasks are sorting, spell, chat" in unknown.get_json()["error"]
    assert task_client.get("/api/task/sorting").status_code == 405


def test_without_the_task_tables_the_text_part_still_works(registry, monkeypatch):
    monkeypatch.setattr(app_module, "TASKS_DIR", registry / "nowhere")
    monkeypatch.setattr(app_module.load_task_data, "__defaults__", (registry / "nowhere",))
    client = create_app(registry).test_client()
    assert client.post("/api/generate", json=body()).status_code == 200
    missing = client.get("/api/tasks")
    assert missing.status_code == 503 and "restore data/tasks/" in missing.get_json()["error"]
    assert client.post("/api/task/spell", json=task_body("spell")).status_code == 503


@pytest.mark.parametrize("word, expected", [
    ("ketis", ["ket", "is"]), ("roketis", ["ro", "ket", "is"]), ("lumul", ["lum", "ul"]),
    ("drooth", ["dro", "oth"]), ("crylorn", ["cryl", "orn"]), ("roquorai", ["ro", "quor", "ai"]),
    ("ket", None), ("ketisx", None), ("rorketis", None), ("", None), ("Ketis", None)])
def test_an_incantation_splits_into_the_lexicons_parts(word, expected):
    lexicon = app_module.load_task_data().lexicon
    parts = spell_parts(word, lexicon)
    assert (None if parts is None else [p["morpheme"] for p in parts]) == expected
    if parts:
        assert [p["kind"] for p in parts][-2:] == ["root", "ending"] and all(p["meaning"] for p in parts)


def test_every_incantation_in_the_spell_table_splits_as_recorded():
    lexicon = app_module.load_task_data().lexicon
    with (TASKS_DIR / "spells.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            parts = [p["morpheme"] for p in spell_parts(row["incantation"], lexicon)]
            assert parts[-2:] == [row["root"], row["ending"]] and (parts[0] == "ro") == (row["intensified"] == "yes")


# --- idle connections ---------------------------------------------------------------------------

def _closed_within(sock, seconds) -> bool:
    """True when the server closes the connection (recv returns b"") within `seconds`."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("sent", [b"", b"POST /api/generate HTTP/1.1\r\nHost: x\r\n"],
                         ids=["silent", "half-a-request"])
def test_an_idle_connection_is_closed_after_the_timeout(app, sent):
    server = make_dev_server(app, "127.0.0.1", 0, idle_timeout=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as idle:
            idle.sendall(sent)
            assert _closed_within(idle, 10), "the server kept an idle connection open"
        assert 0.4 < time.perf_counter() - started < 8
        # meanwhile and afterwards the server answers as usual
        conn, response = http_post(server.server_port, "/api/generate", body())
        assert response.status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_client_that_keeps_sending_is_not_cut_off(app):
    """The timeout is on silence, not on the whole request: a request arriving in pieces, each
    within the timeout, is served."""
    server = make_dev_server(app, "127.0.0.1", 0, idle_timeout=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as slow:
            for piece in (b"GET /api/models HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"Accept: */*\r\n", b"\r\n"):
                slow.sendall(piece)
                time.sleep(0.2)
            reply = b""
            while chunk := slow.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and b'"name":"bigram"' in reply
    finally:
        server.shutdown()
        server.server_close()


def test_the_idle_timeout_is_a_command_line_option():
    assert app_module.build_parser().parse_args([]).idle_timeout == app_module.IDLE_TIMEOUT_S
    assert app_module.build_parser().parse_args(["--idle-timeout", "5"]).idle_timeout == 5
    assert app_module.main(["--idle-timeout", "0"]) == 2


# --- waitress, the production server (optional) -------------------------------------------------

def test_without_waitress_installed_the_option_says_how_to_get_it(registry, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_waitress(name, *args, **kwargs):
        if name == "waitress":
            raise ImportError("No module named 'waitress'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_waitress)
    assert app_module.main(["--server", "waitress", "--port", "0", "--output-dir", str(registry)]) == 2
    assert "pip install waitress" in capsys.readouterr().err


@pytest.fixture
def waitress_server(app):
    pytest.importorskip("waitress")
    server = app_module.make_waitress_server(app, "127.0.0.1", 0, idle_timeout=1, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    yield server
    server.close()


def test_waitress_serves_streams_cancels_and_closes_idle_connections(app, waitress_server):
    port = waitress_server.effective_port
    conn, response = http_post(port, "/api/stream", body(max_new_tokens=15))
    events = read_events(response.read().decode("utf-8"))
    conn.close()
    assert [kind for kind, _ in events].count("token") == 15 and events[-1][0] == "done"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        assert _closed_within(idle, 10)
    # Stop: the client leaves mid-stream and the model's generator is closed
    loaded = app.extensions["course_app"]["cache"].get("dropout")
    real_stream, closed = loaded.stream, threading.Event()

    def slow_stream(*args, **kwargs):
        try:
            for piece in real_stream(*args, **kwargs):
                time.sleep(0.01)
                yield piece
        finally:
            closed.set()

    loaded.stream = slow_stream
    conn, response = http_post(port, "/api/stream", body(max_new_tokens=MAX_NEW_TOKENS))
    assert response.readline().startswith(b"event: start")
    response.close()
    conn.close()
    assert closed.wait(10)


# --- the shipped reference models ---------------------------------------------------------------

@pytest.fixture
def fresh_clone(tmp_path, tokenizer, monkeypatch):
    """Only the fp16 reference models the repository ships, nothing trained (no checkpoints/ at all)."""
    ref = tmp_path / "reference_models"
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_embd=16, n_head=2, n_layer=1)
    save_model(ref / "dropout", GPT(cfg), tokenizer, dtype=torch.float16, profile="gpu")
    bpe_cfg = GPTConfig(vocab_size=50257, block_size=96, n_embd=8, n_head=2, n_layer=1)
    save_model(ref / "finetuned", GPT(bpe_cfg), {"kind": "gpt2-bpe"}, dtype=torch.float16,
               finetune_config={"max_steps": 1})
    monkeypatch.setenv("COURSE_REFERENCE_MODELS", str(ref))
    return tmp_path / "fresh_outputs"


def test_a_fresh_clone_serves_the_reference_models(fresh_clone):
    client = create_app(fresh_clone).test_client()
    rows = {row["name"]: row for row in client.get("/api/models").get_json()}
    assert set(rows) == {"dropout", "finetuned"}
    assert all(row["source"] == "reference" and row["ready"] for row in rows.values())
    assert rows["finetuned"]["tasks"] == ["sorting", "spell", "chat"]
    generated = client.post("/api/generate", json=body())
    assert generated.status_code == 200 and generated.get_json()["pieces"] == 20
    events = read_events(client.post("/api/stream", json=body(greedy=True, temperature=None)).get_data(as_text=True))
    assert events[-1][0] == "done"
    for task in ("sorting", "spell", "chat"):
        assert client.post(f"/api/task/{task}", json=task_body(task)).status_code == 200


def test_a_model_trained_here_replaces_its_reference_copy(fresh_clone, tokenizer):
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_embd=16, n_head=2, n_layer=1)
    save_model(fresh_clone / "checkpoints" / "dropout", GPT(cfg), tokenizer, profile="cpu")
    rows = {row["name"]: row for row in create_app(fresh_clone).test_client().get("/api/models").get_json()}
    assert rows["dropout"]["source"] == "trained" and rows["dropout"]["profile"] == "cpu"
    assert rows["finetuned"]["source"] == "reference"
