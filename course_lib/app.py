"""A small web app to write text with any trained checkpoint of the course.

    python -m course_lib.app                      # http://127.0.0.1:8000, outputs/checkpoints
    python -m course_lib.app --port 8080 --output-dir /path/to/outputs --device cuda

One HTML page (course_lib/app_static/) and a JSON API over the checkpoint registry:

    GET  /                 the page: pick a model, type a prompt, watch the text stream in
    GET  /api/models       [{"name", "model", "parameters", "tokenizer", "vocab_size", "profile",
                             "corpus", "has_weights", ...}, ...]
    POST /api/generate     JSON body (below) -> {"text": prompt + continuation, "completion", "model",
                             "seed", "pieces", "elapsed_s", ...}
    POST /api/stream       the same JSON body -> text/event-stream:
                             event: start  data: {"model", "seed", ...}
                             event: token  data: {"text": "..."}        (one per generated piece)
                             event: done   data: {"pieces", "seed", "elapsed_s", ...}
                             (event: error data: {"error"} if generation fails half-way)
                           Closing the connection stops the generation (the page's Stop button).

The JSON body (sent with Content-Type: application/json):
    {"model": "dropout", "prompt": "WREN:", "max_new_tokens": 200, "temperature": 1.0,
     "top_k": null, "top_p": null, "seed": null}
Only model and prompt are required; numbers must be JSON numbers; null switches top_k / top_p
off and draws a fresh seed (the reply says which, so any sample can be repeated). Every mistake
is answered with HTTP 400 and {"error": "...", "field": "..."} naming the field and what is
allowed, before any text is generated. For example:

    curl -N -X POST http://127.0.0.1:8000/api/stream -H "Content-Type: application/json" \
         -d '{"model": "dropout", "prompt": "WREN:", "max_new_tokens": 100, "seed": 1}'

The server is werkzeug's threaded development server: fine for one person or a classroom on a
trusted network, not meant to face the internet. It listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import secrets
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

import torch
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from . import registry
from .device import pick_device
from .generation import SamplingError
from .tokenizers import UnknownCharacterError
from .training import CheckpointError

log = logging.getLogger("course_lib.app")

STATIC_DIR = Path(__file__).with_name("app_static")
MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 1000
MAX_SEED = 2**32 - 1
MAX_BODY_BYTES = 64 * 1024
DEFAULTS = {"max_new_tokens": 200, "temperature": 1.0, "top_k": None, "top_p": None, "seed": None}
FIELDS = ("model", "prompt", *DEFAULTS)


class InputError(ValueError):
    """A request the client must fix: answered with HTTP 400 and this message."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------------------
# Reading and checking a request
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GenerationRequest:
    model: str
    prompt: str
    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}


def _shown(value, limit: int = 40) -> str:
    """A client's value quoted in an error message, cut short if long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_finite_number(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _integer(body: dict, field: str, low: int, high: int, allowed: str) -> int | None:
    value = body.get(field, DEFAULTS[field])
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(field, f"{field} must be {allowed}; got {_shown(value)}.")
    if not low <= value <= high:
        raise InputError(field, f"{field} must be {allowed}; got {_shown(value)}.")
    return value


def _real(body: dict, field: str, allowed: str, ok) -> float | None:
    value = body.get(field, DEFAULTS[field])
    if value is None:
        return None
    if not _is_finite_number(value) or not ok(value):
        raise InputError(field, f"{field} must be {allowed}; got {_shown(value)}.")
    return float(value)


def parse_request(body, rows: dict[str, dict]) -> GenerationRequest:
    """Check a request's body before any work: fields, types, ranges, the model's name, and
    top_k and the prompt's characters against the tokenizer recorded in the model's metadata.

    `rows`: list_checkpoints() by name. Only names found there are accepted, so a request can
    never make load_model open an arbitrary path.
    """
    if not isinstance(body, dict):
        raise InputError(None, "The request body must be a JSON object such as "
                               '{"model": "dropout", "prompt": "WREN:", "max_new_tokens": 100}.')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        shown = ", ".join(_shown(key) for key in unknown[:5])
        raise InputError(unknown[0][:40], f"Unknown field(s) {shown}; allowed: {', '.join(FIELDS)}.")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InputError("model", "model is required: the name of a checkpoint from GET /api/models.")
    available = [n for n, row in rows.items() if row.get("ready")]
    if name not in rows:
        raise InputError("model", f"model: unknown model {_shown(name)}; available: "
                                  f"{', '.join(available) or 'none yet (run `make course`)'}.")
    if rows[name].get("broken"):
        raise InputError("model", f"model: {name!r} is damaged ({rows[name]['broken']}); available: "
                                  f"{', '.join(available) or 'none'}.")
    if not rows[name].get("ready"):
        notebook = registry.WRITTEN_BY.get(name)
        how = f"run notebooks/{notebook}.ipynb (or `make course`)" if notebook else "re-run the notebook that wrote it"
        raise InputError("model", f"model: {name!r} has metadata but no weights file; {how}.")
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise InputError("prompt", "prompt is required and must be a string of text to continue.")
    if not prompt:
        raise InputError("prompt", "prompt is empty: type at least one character to continue.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError("prompt", f"prompt is too long: {len(prompt)} characters, at most "
                                   f"{MAX_PROMPT_CHARS} allowed.")
    max_new = _integer(body, "max_new_tokens", 1, MAX_NEW_TOKENS, f"an integer from 1 to {MAX_NEW_TOKENS}")
    if max_new is None:
        raise InputError("max_new_tokens", f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS}; got null.")
    temperature = _real(body, "temperature", "a number > 0 (e.g. 0.8; 1.0 = the model's own distribution)",
                        lambda t: t > 0)
    if temperature is None:
        raise InputError("temperature", "temperature must be a number > 0; got null.")
    # top_k's upper bound is the model's vocabulary size: check_for_model finishes it.
    top_k = _integer(body, "top_k", 1, sys.maxsize, "an integer >= 1 (at most the vocabulary size), or null for off")
    top_p = _real(body, "top_p", "a number in (0, 1], e.g. 0.9, or null for off", lambda p: 0 < p <= 1)
    seed = _integer(body, "seed", 0, MAX_SEED, f"an integer from 0 to {MAX_SEED}, or null for a random one")
    if seed is None:
        # Every request gets its own seeded generator: nothing touches torch's global RNG, and
        # the reply reports the seed so an unseeded sample can still be repeated.
        seed = secrets.randbelow(MAX_SEED + 1)
    req = GenerationRequest(name, prompt, max_new, temperature, top_k, top_p, seed)
    # The metadata holds the tokenizer, so the model-specific checks run before loading anything.
    spec = rows[name].get("tokenizer") or {}
    check_for_model(req, _vocab_size(spec, rows[name]), spec.get("chars"))
    return req


def check_for_model(req: GenerationRequest, vocab_size: int | None, chars) -> None:
    """The checks that depend on the model: top_k against its vocabulary size and, for a
    character-level model (`chars`: its characters, else None), the prompt's characters."""
    if req.top_k is not None and vocab_size is not None and req.top_k > vocab_size:
        raise InputError("top_k", f"top_k must be an integer from 1 to {vocab_size} (the vocabulary size "
                                  f"of {req.model!r}), or null for off; got {req.top_k}.")
    if chars is not None:
        unknown = sorted(set(req.prompt) - set(chars))
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise InputError("prompt", f"prompt: {len(unknown)} character(s) are unknown to the character-level "
                                       f"model {req.model!r}: {shown}. Remove or replace them.")


# ---------------------------------------------------------------------------------------------
# Models: loaded once, shared by every request
# ---------------------------------------------------------------------------------------------

def _vocab_size(spec: dict, meta: dict) -> int | None:
    if "chars" in spec:
        return len(spec["chars"])
    if "itos" in spec:
        return len(spec["itos"])
    if (spec.get("kind") or spec.get("type")) == "gpt2-bpe":
        return 50257
    return meta.get("vocab_size") or (meta.get("config") or {}).get("vocab_size")


def public_row(row: dict) -> dict:
    """What the page needs to know about a checkpoint (not its whole metadata)."""
    spec = row.get("tokenizer") or {}
    return {"name": row["name"], "model": row.get("model"), "parameters": row.get("parameters"),
            "tokenizer": spec.get("kind") or spec.get("type"), "vocab_size": _vocab_size(spec, row),
            "block_size": (row.get("config") or {}).get("block_size"), "profile": row.get("profile"),
            "corpus": row.get("corpus"), "notebook": row.get("notebook"), "has_weights": row["has_weights"]}


class ModelCache:
    """name -> LoadedModel, each loaded at most once (again only if its weights file changes).

    A lock per name: two first requests for the same model wait for one load, while a request
    for an already loaded model is not held up by a slow load of another one.
    """

    def __init__(self, output_dir, device: torch.device):
        self.output_dir, self.device = output_dir, device
        self._lock = threading.Lock()                    # guards _name_locks
        self._name_locks: dict[str, threading.Lock] = {}
        self._models: dict[str, tuple[int, registry.LoadedModel]] = {}  # name -> (weights mtime, model)

    def rows(self) -> dict[str, dict]:
        return {row["name"]: row for row in registry.list_checkpoints(self.output_dir)}

    def loaded_names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str) -> registry.LoadedModel:
        with self._lock:
            name_lock = self._name_locks.setdefault(name, threading.Lock())
        with name_lock:
            row = self.rows().get(name, {})
            weights = Path(row.get("path", ""))
            stamp = weights.stat().st_mtime_ns if row.get("ready") and weights.exists() else -1
            cached = self._models.get(name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            started = time.perf_counter()
            loaded = registry.load_model(name, self.output_dir, self.device)
            log.info("loaded %s (%s, %s parameters) in %.1f s", name, loaded.meta.get("model"),
                     f"{loaded.parameters:,}", time.perf_counter() - started)
            self._models[name] = (stamp, loaded)
            return loaded


# Concurrency: requests share one model object per name and are NOT serialised by a lock.
# Generating never writes to the model: it stays in eval mode from load on (iter_generate's
# model.eval() / model.train(was_training) only re-set the flag it already has), runs without
# autograd, builds its KV cache with model.new_cache() per call, keeps the LSTM's hidden state
# in local variables, and samples with its own torch.Generator seeded from the request's seed.
# The tokenizers are read-only. So two requests on the same model cannot see each other's
# state, and torch releases the GIL inside its kernels, so they really run side by side. A lock
# per model would instead make one long stream (up to MAX_NEW_TOKENS tokens, paced by a slow
# client) block every other user of that model. tests/test_app.py fires concurrent requests and
# checks each gives the same text as when run alone.

def _stepwise_inference(pieces):
    """Advance the generator one step at a time inside torch.inference_mode().

    A `with` block around `yield` would leave inference mode switched on in whatever code runs
    between two steps (here werkzeug, writing to the socket); entering it per step keeps it
    around the model's work only.
    """
    while True:
        with torch.inference_mode():
            try:
                piece = next(pieces)
            except StopIteration:
                return
        yield piece


class Stats:
    """Counters the tests (and the log) use to see streams start, finish and get cancelled."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = {"active": 0, "done": 0, "cancelled": 0, "failed": 0}

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.counts)


def _sse(event: str, data: dict) -> str:
    # json.dumps escapes newlines, so every payload fits on the one `data:` line SSE allows.
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


# ---------------------------------------------------------------------------------------------
# The Flask app
# ---------------------------------------------------------------------------------------------

def create_app(output_dir=None, device: str = "cpu") -> Flask:
    """The app over the checkpoints in `output_dir`/checkpoints (default: outputs/, or COURSE_OUTPUT_DIR)."""
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    cache = ModelCache(output_dir, pick_device(device))
    stats = Stats()
    app.extensions["course_app"] = {"cache": cache, "stats": stats}
    page = Template((STATIC_DIR / "index.html").read_text(encoding="utf-8")).substitute(
        max_prompt_chars=MAX_PROMPT_CHARS, max_new_tokens=MAX_NEW_TOKENS, max_seed=MAX_SEED)

    def prepare() -> tuple[GenerationRequest, registry.LoadedModel]:
        if not request.is_json:
            # Also a guard: a page on another site can only send a cross-origin POST with a JSON
            # content type after a CORS preflight, which this server never grants.
            raise InputError(None, "Send the body as JSON, with the header Content-Type: application/json.")
        body = request.get_json(silent=True)
        if body is None:
            raise InputError(None, "The request body is not valid JSON. Send a JSON object such as "
                                   '{"model": "dropout", "prompt": "WREN:"} (Content-Type: application/json).')
        req = parse_request(body, cache.rows())
        loaded = cache.get(req.model)
        # again with the tokenizer actually loaded (from the .pt), in case the .json sidecar differs
        check_for_model(req, loaded.tokenizer.vocab_size, getattr(loaded.tokenizer, "chars", None))
        return req, loaded

    def describe(req: GenerationRequest, loaded: registry.LoadedModel) -> dict:
        return {"model": req.model, "model_kind": loaded.meta.get("model"), **asdict(req)}

    @app.get("/")
    def index():
        return Response(page, mimetype="text/html")

    @app.get("/api/models")
    def models():
        return jsonify([public_row(row) for row in cache.rows().values()])

    @app.post("/api/generate")
    def generate():
        req, loaded = prepare()
        started = time.perf_counter()
        pieces = list(_stepwise_inference(loaded.stream(req.prompt, req.max_new_tokens, **req.sampling())))
        elapsed = time.perf_counter() - started
        completion = "".join(pieces)
        return jsonify({**describe(req, loaded), "text": req.prompt + completion, "completion": completion,
                        "pieces": len(pieces), "elapsed_s": round(elapsed, 4)})

    @app.post("/api/stream")
    def stream():
        req, loaded = prepare()

        def events():
            # Runs after the view has returned, while werkzeug writes each event to the socket.
            # When the client goes away (Stop, closed tab), that write fails, werkzeug closes this
            # generator: GeneratorExit is raised at the `yield` and `finally` closes the model's
            # generator, so no more tokens are computed for nobody.
            pieces = loaded.stream(req.prompt, req.max_new_tokens, **req.sampling())
            count, outcome, started = 0, "cancelled", time.perf_counter()
            stats.add("active")
            try:
                yield _sse("start", describe(req, loaded))
                for piece in _stepwise_inference(pieces):
                    count += 1
                    yield _sse("token", {"text": piece})
                elapsed = time.perf_counter() - started
                outcome = "done"
                yield _sse("done", {"pieces": count, "seed": req.seed, "elapsed_s": round(elapsed, 4),
                                    "pieces_per_s": round(count / elapsed, 1) if elapsed > 0 else None})
            except Exception as err:  # noqa: BLE001 -- the status line must say it; the server goes on
                outcome = "failed"
                log.exception("generation failed half-way (%s)", req.model)
                yield _sse("error", {"error": f"generation failed after {count} pieces: {type(err).__name__}"})
            finally:
                pieces.close()
                stats.add("active", -1)
                stats.add(outcome)
                if outcome == "cancelled":
                    log.info("stream of %s stopped by the client after %d pieces", req.model, count)

        return Response(events(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.errorhandler(InputError)
    def bad_input(err: InputError):
        payload = {"error": str(err)}
        if err.field:
            payload["field"] = err.field
        return jsonify(payload), 400

    @app.errorhandler(SamplingError)
    @app.errorhandler(UnknownCharacterError)
    def library_refused(err: ValueError):
        # a safety net: parse_request should have caught these already, with the field named
        return jsonify({"error": str(err)}), 400

    @app.errorhandler(CheckpointError)
    def bad_checkpoint(err: CheckpointError):
        # the registry's messages say what is wrong with the file and how to remake it
        log.error("checkpoint problem: %s", err)
        return jsonify({"error": str(err)}), 500

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if request.path.startswith("/api/"):
            return jsonify({"error": f"{err.code} {err.name}: {err.description}"}), err.code
        return err

    @app.errorhandler(Exception)
    def crashed(err: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify({"error": f"Internal error ({type(err).__name__}); the server log has the details."}), 500

    return app


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_lib.app",
                                description="A page and a JSON API that write text with the course's checkpoints.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--output-dir", default=None, help="the folder holding checkpoints/ (default: outputs/)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_notice(host: str, port: int) -> str:
    """What to print at start-up about who can reach the server."""
    if _is_loopback(host):
        return (f"Only this computer can reach it. To let other machines in on purpose, restart with "
                f"--host 0.0.0.0 (there is no login: anyone who reaches port {port} can use it).")
    return (f"WARNING: listening on {host}, so other machines on the network can reach this server. "
            "It has no login and is a development server: use it on a trusted network only, "
            "and stop it (Ctrl+C) when you are done. Drop --host to keep it on 127.0.0.1.")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from werkzeug.serving import make_server

    try:
        app = create_app(args.output_dir, args.device)
    except (RuntimeError, ValueError) as err:  # e.g. --device cuda without a GPU
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except (OSError, SystemExit):  # werkzeug prints why and exits when it cannot bind
        print(f"error: cannot listen on {args.host}:{args.port}. Try another --port.", file=sys.stderr)
        return 2
    rows = app.extensions["course_app"]["cache"].rows()
    ready = [name for name, row in rows.items() if row["ready"]]
    where = registry.checkpoints_dir(args.output_dir)
    print(f"{len(ready)} checkpoint(s) ready in {where}: {', '.join(ready) or 'none yet (run `make course`)'}")
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Serving on http://{shown_host}:{server.server_port}/  (Ctrl+C to stop)")
    print(exposure_notice(args.host, server.server_port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
