"""An HTTP API for a trained generator (the original's ``eval/`` was a Flask app).

Built on the standard library's ``http.server`` (``ThreadingHTTPServer``): the project may
not add a web framework as a dependency, and the API is three routes.

* ``GET /health`` -> ``{"status": "ok", ...}``
* ``GET /openapi.json`` -> the OpenAPI 3 schema of this API
* ``POST /generate`` with ``{"caption": str, "seed": int?, "count": 1..8}`` -> ``image/png``
  (the ``count`` images side by side), or JSON with base64 PNGs when the request has
  ``Accept: application/json``.  Unknown words are dropped and listed
  (``X-Unknown-Words`` header / ``unknown_words``).

Errors are JSON ``{"error": "..."}``: 400 malformed JSON, 404 unknown route, 413 body over
``MAX_BODY`` bytes, 422 invalid caption/seed/count (empty, too long, only unknown words),
500 anything else; the server keeps running.  Requests that arrive together are batched
into one generator call on the model's device (:class:`BatchingGenerator`).
"""

from __future__ import annotations

import base64
import io
import json
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from PIL import Image

from .sample import Generator, generate, noise_dim, noise_for, to_pil
from .text import tokenize

__all__ = ["BatchingGenerator", "make_server", "openapi_schema", "MAX_BODY", "MAX_CHARS"]

MAX_BODY = 16 * 1024  # bytes of a request body
MAX_CHARS = 500  # characters of a caption
MAX_WORDS = 64  # known words kept from a caption
MAX_COUNT = 8


@dataclass
class _Job:
    ids: list[int]
    seeds: list[int]
    done: threading.Event = field(default_factory=threading.Event)
    images: list[torch.Tensor] | None = None
    error: BaseException | None = None


class BatchingGenerator:
    """One worker thread owns the model; concurrent requests are merged into one batch.

    The worker takes the first waiting job, then keeps collecting jobs for ``wait_s``
    seconds or until ``max_batch`` images are queued, and runs G once.  Each image's noise
    comes from its own seed, and BN is in eval mode, so a result does not depend on what
    it was batched with (padding gets no attention with the correct mask).
    """

    def __init__(self, gen: Generator, max_batch: int = 16, wait_s: float = 0.005):
        self.gen = gen
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches = 0  # number of generator calls (for tests and logs)
        self.thread = threading.Thread(target=self._work, name="attngan-batcher", daemon=True)
        self.thread.start()

    def submit(self, ids: list[int], seeds: list[int], timeout: float = 120.0) -> list:
        """Images ``[3, S, S]`` for caption ``ids`` (one per seed); blocks until done."""
        job = _Job(ids, seeds)
        self.jobs.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError("generation timed out")
        if job.error is not None:
            raise job.error
        return job.images

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=5)

    def _collect(self, first: _Job) -> list[_Job]:
        jobs, total = [first], len(first.seeds)
        deadline = time.monotonic() + self.wait_s
        while total < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self.jobs.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self.jobs.put(None)  # keep the stop signal for the loop
                break
            jobs.append(job)
            total += len(job.seeds)
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        rows = [(job.ids, s) for job in jobs for s in job.seeds]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.int64)
        for i, (r, _) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        lens = torch.tensor([len(r) for r, _ in rows])
        noise = noise_for([s for _, s in rows], noise_dim(self.gen.cfg))
        images = generate(self.gen, ids, lens, noise)[0][-1]
        self.batches += 1
        start = 0
        for job in jobs:
            job.images = list(images[start : start + len(job.seeds)])
            start += len(job.seeds)

    def _work(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            jobs = self._collect(first)
            try:
                self._run(jobs)
            except BaseException as exc:  # noqa: BLE001 - reported to every waiting request
                for job in jobs:
                    job.error = exc
            for job in jobs:
                job.done.set()


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, vocab) -> tuple[list[int], list[str], int, int]:
    """``(word ids, unknown words, seed, count)`` of a /generate body, or a RequestError."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"body: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "body: expected a JSON object")
    extra = sorted(set(data) - {"caption", "seed", "count"})
    if extra:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"unknown field(s): {', '.join(extra)}")
    caption = data.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, "caption: expected a non-empty string")
    if len(caption) > MAX_CHARS:
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY, f"caption: at most {MAX_CHARS} characters"
        )
    count = data.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY, f"count: expected an integer 1..{MAX_COUNT}"
        )
    seed = data.get("seed")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, "seed: expected an integer >= 0")
    tokens = tokenize(caption)
    ids, unknown = vocab.encode(tokens)
    if not ids:
        words = ", ".join(sorted(set(unknown))) or "none"
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"caption: no word is in the vocabulary (unknown: {words})",
        )
    return ids[:MAX_WORDS], unknown, seed, count


def _array(kind: str, fmt: str | None = None) -> dict:
    items = {"type": kind, **({"format": fmt} if fmt else {})}
    return {"type": "array", "items": items}


def openapi_schema(image_size: int) -> dict:
    """The OpenAPI 3.0 description of the three routes."""
    error = {"type": "object", "properties": {"error": {"type": "string"}}}
    err = {"content": {"application/json": {"schema": error}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "attngan-serve", "version": "1.0", "description": __doc__.split("\n")[0]},
        "paths": {
            "/health": {"get": {"responses": {"200": {"description": "The server is up"}}}},
            "/generate": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["caption"],
                                    "properties": {
                                        "caption": {"type": "string", "maxLength": MAX_CHARS},
                                        "seed": {"type": "integer", "minimum": 0},
                                        "count": {
                                            "type": "integer",
                                            "minimum": 1,
                                            "maximum": MAX_COUNT,
                                            "default": 1,
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": f"count images of {image_size} px, side by side",
                            "content": {
                                "image/png": {},
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "images": _array("string", "byte"),
                                            "seed": {"type": "integer"},
                                            "unknown_words": _array("string"),
                                        },
                                    }
                                },
                            },
                        },
                        "400": {"description": "Malformed JSON", **err},
                        "413": {"description": "Body too large", **err},
                        "422": {"description": "Invalid caption, seed or count", **err},
                    },
                }
            },
            "/openapi.json": {"get": {"responses": {"200": {"description": "This schema"}}}},
        },
    }  # fmt: skip


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _side_by_side(images: list[torch.Tensor]) -> Image.Image:
    pictures = [to_pil(img) for img in images]
    sheet = Image.new("RGB", (sum(p.width for p in pictures), pictures[0].height))
    for i, p in enumerate(pictures):
        sheet.paste(p, (i * p.width, 0))
    return sheet


class Handler(BaseHTTPRequestHandler):
    server_version = "attngan-serve/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        gen: Generator = self.server.batcher.gen
        if self.path == "/health":
            health = {"status": "ok", "device": str(gen.device), "vocab_size": len(gen.vocab)}
            self._json(200, {**health, "image_size": self.server.image_size})
        elif self.path == "/openapi.json":
            self._json(200, openapi_schema(self.server.image_size))
        else:
            self._json(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        try:
            self._generate()
        except RequestError as exc:
            self._json(exc.status, {"error": str(exc)}, {"Connection": "close"})
        except Exception as exc:  # noqa: BLE001 - the server must survive any request
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"}, {"Connection": "close"})

    def _generate(self) -> None:
        if self.path.split("?")[0] != "/generate":
            raise RequestError(HTTPStatus.NOT_FOUND, f"no route POST {self.path}")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required") from None
        if length > MAX_BODY or length < 0:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body: at most {MAX_BODY} bytes"
            )
        body = self.rfile.read(length)
        ids, unknown, seed, count = parse_request(body, self.server.batcher.gen.vocab)
        images = self.server.batcher.submit(ids, [seed + i for i in range(count)])
        headers = {"X-Seed": str(seed), "X-Unknown-Words": ",".join(unknown)}
        wants_json = "application/json" in self.headers.get("Accept", "")
        if wants_json or "format=json" in self.path:
            encoded = [base64.b64encode(_png(to_pil(img))).decode() for img in images]
            self._json(200, {"images": encoded, "seed": seed, "unknown_words": unknown}, headers)
        else:
            self._send(200, _png(_side_by_side(images)), "image/png", headers)


def make_server(
    gen: Generator,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 16,
    verbose: bool = False,
) -> ThreadingHTTPServer:
    """A ready server (call ``serve_forever()``; ``server.batcher.close()`` after shutdown)."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.batcher = BatchingGenerator(gen, max_batch=max_batch)  # type: ignore[attr-defined]
    server.verbose = verbose  # type: ignore[attr-defined]
    size = gen.cfg["TREE"]["BASE_SIZE"] * 2 ** (gen.cfg["TREE"]["BRANCH_NUM"] - 1)
    server.image_size = size  # type: ignore[attr-defined]
    return server
