"""The text-generation web app (course_lib/app.py): API, streaming, validation, concurrency."""

import http.client
import json
import os
import threading
import time

import pytest
import torch
from werkzeug.serving import make_server

from course_lib import app as app_module
from course_lib.app import MAX_NEW_TOKENS, MAX_PROMPT_CHARS, create_app, exposure_notice
from course_lib.models import GPT, BigramLM, GPTConfig
from course_lib.models.lstm import LSTMConfig, LSTMLanguageModel
from course_lib.registry import load_model
from course_lib.checkpoints import save_model
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
                    'id="top_p"', 'id="seed"', 'id="generate"', 'id="stop"', 'id="output"', 'id="status"'):
        assert element in html
    assert f'maxlength="{MAX_PROMPT_CHARS}"' in html and "$" not in html  # template fully filled
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
    (body(temperature="hot"), "temperature", 'got "hot"'),
    (body(top_k=0), "top_k", "an integer >= 1"),
    (body(top_k=10_000), "top_k", "from 1 to"),
    (body(top_k=2.5), "top_k", "got 2.5"),
    (body(top_k="5"), "top_k", "integer"),
    (body(top_p=0), "top_p", "in (0, 1]"),
    (body(top_p=1.5), "top_p", "in (0, 1]"),
    (body(top_p="x"), "top_p", "in (0, 1]"),
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
    """The app on a real threaded HTTP server, 127.0.0.1, a free port."""
    srv = make_server("127.0.0.1", 0, app, threaded=True)
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
