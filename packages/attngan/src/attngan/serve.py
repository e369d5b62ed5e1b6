"""attngan-serve: the HTTP API and its page, on FastAPI + uvicorn (the extra ``attngan[serve]``).

The original's ``eval/`` was a Flask app with one route, ``POST /api/v1.0/bird``; that route
answers here in the same shape, beside our own:

* ``GET /`` -> the page (plain HTML + JS from ``attngan/web/``, nothing from elsewhere)
* ``GET /health`` -> ``{"status": "ok", "device", "vocab_size", "image_size", "stage_sizes"}``
* ``GET /vocabulary`` -> ``{"words": [...]}`` (what a caption may use)
* ``POST /generate`` ``{"caption", "seed"?, "count"?, "stages"?, "attention"?}`` -> ``image/png``
  (the images side by side), or JSON with base64 PNGs (``Accept: application/json``, or when
  ``stages`` / ``attention`` is asked for): the final images, every stage, and one attention
  map per known word per attention stage.
* ``POST /api/v1.0/bird`` ``{"caption"}`` -> 201 ``{"bird": {"small", "medium", "large",
  "map1", "map2", "caption", "elapsed"}}``, the images as ``data:`` URLs.
* ``GET /docs`` (Swagger UI, served from here), ``GET /openapi.json``: from FastAPI.

Errors are JSON ``{"error": "..."}``: 400 malformed JSON, 404, 405, 413 body over
``MAX_BODY`` bytes, 415 not JSON, 422 invalid caption/seed/count (empty, too long, only
unknown words, unknown field), 503 queue full; the server keeps running.  Requests that
arrive together are batched into one generator call (:class:`~attngan.batching.BatchingGenerator`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import socket
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from swagger_ui_bundle import swagger_ui_path
from uvicorn.protocols.http.h11_impl import H11Protocol

from .batching import BatchingGenerator, Busy, Result
from .models import stage_sizes
from .sample import MAX_WORDS, Generator, to_pil
from .text import tokenize
from .viz import attention_figure

__all__ = ["make_app", "bind", "serve", "ServerThread", "MAX_BODY", "MAX_CHARS", "MAX_COUNT"]

MAX_BODY = 16 * 1024  # bytes of a request body
MAX_CHARS = 500  # characters of a caption
MAX_COUNT = 8  # images per request
WEB = Path(__file__).parent / "web"


def _not_blank(caption: str) -> str:
    if not caption.strip():
        raise ValueError("empty; type a few words")
    return caption


Caption = Annotated[
    str,
    Field(max_length=MAX_CHARS, description="Words outside the vocabulary are dropped"),
    AfterValidator(_not_blank),
]
Seed = Annotated[int | None, Field(ge=0, lt=2**63, description="Default: a random seed")]


class GenerateRequest(BaseModel):
    """Body of ``POST /generate``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    caption: Caption
    seed: Seed = None
    count: int = Field(1, ge=1, le=MAX_COUNT, description="Images, with seeds seed, seed+1, ...")
    stages: bool = Field(False, description="Also return every stage's image (JSON)")
    attention: bool = Field(False, description="Also return the per-word attention maps (JSON)")


class WordMaps(BaseModel):
    size: int = Field(description="Side of the attention grid of this stage")
    maps: list[str] = Field(description="Per known word: a base64 PNG of the map over the image")


class GenerateResponse(BaseModel):
    seed: int
    words: list[str] = Field(description="The caption's known words, in order")
    unknown_words: list[str]
    images: list[str] = Field(description="Base64 PNGs, the last stage, one per seed")
    stages: list[list[str]] | None = Field(None, description="Per image: every stage, small first")
    attention: list[list[WordMaps]] | None = Field(None, description="Per image, per stage")


class BirdRequest(BaseModel):
    """The original's body; extra fields are ignored as Flask did."""

    model_config = ConfigDict(strict=True)
    caption: Caption
    seed: Seed = None


class Bird(BaseModel):
    model_config = ConfigDict(extra="allow")  # small/medium/large/map1/map2 as present
    caption: str
    elapsed: float


class BirdResponse(BaseModel):
    bird: Bird


class Health(BaseModel):
    status: str
    device: str
    vocab_size: int
    image_size: int
    stage_sizes: list[int]
    max_chars: int
    max_count: int


class ErrorResponse(BaseModel):
    error: str


# ---------------------------------------------------------------------------------------------
# Pictures


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_b64(image: Image.Image) -> str:
    return base64.b64encode(png_bytes(image)).decode()


def side_by_side(images: torch.Tensor) -> Image.Image:
    """``[n, 3, S, S]`` -> one PIL image, n wide."""
    pictures = [to_pil(img) for img in images]
    sheet = Image.new("RGB", (sum(p.width for p in pictures), pictures[0].height))
    for i, p in enumerate(pictures):
        sheet.paste(p, (i * p.width, 0))
    return sheet


def word_maps(image: torch.Tensor, attn: torch.Tensor) -> list[str]:
    """``image [3, S, S]``, ``attn [T, s, s]`` -> T base64 PNGs: the image lit by each map."""
    size = image.size(-1)
    maps = F.interpolate(attn[:, None].float(), size=(size, size), mode="bilinear")[:, 0]
    lo = maps.flatten(1).min(1)[0][:, None, None]
    hi = maps.flatten(1).max(1)[0][:, None, None]
    maps = (maps - lo) / (hi - lo).clamp(min=1e-8)  # [T, S, S] in [0, 1]
    base = (image.float().clamp(-1, 1) + 1) / 2  # [3, S, S] in [0, 1]
    heat = torch.stack([maps, maps, maps * 0.25], 1)  # [T, 3, S, S], yellow
    lit = 0.45 * base + 0.55 * heat
    return [png_b64(to_pil(x * 2 - 1)) for x in lit]


def _under(stages: list[torch.Tensor], k: int) -> torch.Tensor:
    """The images attention stage ``k`` is drawn over: stage ``k + 2`` (1-based), or the only
    image of a G_DCGAN."""
    return stages[k + 1] if len(stages) > 1 else stages[-1]


def _generate_json(result: Result, seed: int, words, unknown, req: GenerateRequest) -> dict:
    stages, atts = result.stages, result.attention
    n = stages[-1].size(0)
    out = {"seed": seed, "words": words, "unknown_words": unknown,
           "images": [png_b64(to_pil(img)) for img in stages[-1]]}  # fmt: skip
    if req.stages:
        out["stages"] = [[png_b64(to_pil(s[i])) for s in stages] for i in range(n)]
    if req.attention:
        out["attention"] = [
            [
                {"size": a.size(-1), "maps": word_maps(_under(stages, k)[i], a[i])}
                for k, a in enumerate(atts)
            ]
            for i in range(n)
        ]
    return out


def _bird_json(result: Result, caption: str, words: list[str], elapsed: float) -> dict:
    stages = result.stages
    names = {1: ["large"], 2: ["small", "large"]}.get(len(stages), ["small", "medium", "large"])
    names += [f"stage{k + 1}" for k in range(len(names), len(stages))]
    url = "data:image/png;base64,"
    bird = {name: url + png_b64(to_pil(s[0])) for name, s in zip(names, stages)}
    for k, a in enumerate(result.attention):
        figure = attention_figure(_under(stages, k)[0], a[0], words)
        bird[f"map{k + 1}"] = url + png_b64(figure)
    return {"bird": {**bird, "caption": caption, "elapsed": elapsed}}


# ---------------------------------------------------------------------------------------------
# The app


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_body`` bytes (declared or streamed)."""

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body:
            response = _error(413, f"body: at most {self.max_body} bytes")
            response.headers["Connection"] = "close"
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise HTTPException(413, f"body: at most {self.max_body} bytes")
            return message

        return await self.app(scope, limited, send)


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    parts, status = [], 422
    for e in exc.errors():
        if e["type"] == "json_invalid":
            status = 400
            parts.append(f"body: not JSON ({e.get('ctx', {}).get('error', e['msg'])})")
            continue
        loc = [str(x) for x in e["loc"] if x != "body"]
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    return status, "; ".join(parts)


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and not (kind == "application/json" or kind.endswith("+json")):
        return _error(415, "body: send JSON with 'Content-Type: application/json'")
    return _error(*_validation_message(exc))


async def _on_http(request: Request, exc: HTTPException) -> JSONResponse:
    message = {404: f"no route {request.method} {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}  # fmt: skip
    headers = dict(exc.headers or {})
    if exc.status_code == 413:
        headers["Connection"] = "close"
    return _error(exc.status_code, message.get(exc.status_code, str(exc.detail)), headers)


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    """Anything else (a failed generator call): JSON 500; uvicorn logs the traceback."""
    return _error(500, f"generation failed: {type(exc).__name__}: {exc}")


def _encode(gen: Generator, caption: str) -> tuple[list[int], list[str], list[str]]:
    """``(ids, known words, unknown words)``; 422 when no word is known."""
    ids, unknown = gen.vocab.encode(tokenize(caption))
    if not ids:
        words = ", ".join(sorted(set(unknown))) or "none"
        raise HTTPException(422, f"caption: no word is in the vocabulary (unknown: {words})")
    ids = ids[:MAX_WORDS]
    return ids, gen.vocab.decode(ids), unknown


async def _run(batcher: BatchingGenerator, ids: list[int], seeds: list[int]) -> Result:
    try:
        future = batcher.submit(ids, seeds)
    except Busy as exc:
        raise HTTPException(503, f"busy: {exc}", headers={"Retry-After": "1"}) from None
    return await asyncio.wrap_future(future)


def _new_seed(seed: int | None) -> int:
    return random.SystemRandom().randrange(2**31) if seed is None else seed


_ERRORS = {code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 503)}


def make_app(gen: Generator, max_batch: int = 16, max_queue: int = 512) -> FastAPI:
    """The ASGI app for ``gen``; its batching worker starts and stops with the app's lifespan."""
    sizes = stage_sizes(gen.cfg)[-1:] if gen.cfg["GAN"]["B_DCGAN"] else stage_sizes(gen.cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.batcher = BatchingGenerator(gen, max_batch=max_batch, max_queue=max_queue)
        yield
        await run_in_threadpool(app.state.batcher.close)

    app = FastAPI(title="attngan-serve", version="2.0", lifespan=lifespan,
                  description=__doc__.split("\n\n")[0], docs_url=None, redoc_url=None,
                  exception_handlers={RequestValidationError: _on_invalid,
                                      HTTPException: _on_http, Exception: _on_crash})  # fmt: skip
    app.add_middleware(BodyLimit, max_body=MAX_BODY)
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    app.mount("/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs():
        """FastAPI's Swagger UI, its files served from here (swagger-ui-bundle), not a CDN."""
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="attngan-serve",
                                   swagger_js_url="/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/swagger/swagger-ui.css",
                                   swagger_favicon_url="/swagger/favicon-32x32.png")  # fmt: skip

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    @app.get("/health")
    def health() -> Health:
        return Health(status="ok", device=str(gen.device), vocab_size=len(gen.vocab),
                      image_size=sizes[-1], stage_sizes=sizes, max_chars=MAX_CHARS,
                      max_count=MAX_COUNT)  # fmt: skip

    @app.get("/vocabulary")
    def vocabulary() -> dict[str, list[str]]:
        return {"words": [w for w in gen.vocab.decode(range(1, len(gen.vocab)))]}

    @app.post(
        "/generate",
        response_model=GenerateResponse,
        responses={200: {"content": {"image/png": {}}}, **_ERRORS},
    )
    async def generate(body: GenerateRequest, request: Request, format: str | None = None):
        """Images for a caption: a PNG, or JSON (Accept: application/json, stages, attention)."""
        ids, words, unknown = _encode(gen, body.caption)
        seed = _new_seed(body.seed)
        result = await _run(app.state.batcher, ids, [seed + i for i in range(body.count)])
        headers = {"X-Seed": str(seed), "X-Unknown-Words": ",".join(unknown)}
        wants_json = "application/json" in request.headers.get("accept", "") or format == "json"
        if wants_json or body.stages or body.attention:
            data = await run_in_threadpool(_generate_json, result, seed, words, unknown, body)
            return JSONResponse(data, headers=headers)
        sheet = await run_in_threadpool(side_by_side, result.stages[-1])
        png = await run_in_threadpool(png_bytes, sheet)
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/api/v1.0/bird", status_code=201, responses=_ERRORS)
    async def bird(body: BirdRequest) -> BirdResponse:
        """The original Flask API: every stage and the attention maps as ``data:`` URLs."""
        start = time.perf_counter()
        ids, words, _ = _encode(gen, body.caption)
        result = await _run(app.state.batcher, ids, [_new_seed(body.seed)])
        elapsed = time.perf_counter() - start
        return await run_in_threadpool(_bird_json, result, body.caption, words, elapsed)

    return app


# ---------------------------------------------------------------------------------------------
# Running it


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (``port`` 0: a free one); OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _DeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request's head.

    uvicorn times out a keep-alive connection only after a response; a connection that
    never sends a request (or stalls inside its headers, a byte at a time) would stay open
    for ever.  Here every connection must deliver a complete request head within
    ``timeout_keep_alive`` seconds of opening or of its last response, else it is closed.
    """

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._seen_cycle = None
        self._deadline = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()
        self._track()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.timeout_keep_alive, self._expire)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _track(self) -> None:
        """A new request head arrived: its deadline is met."""
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle
            if not self.cycle.response_complete:
                self._disarm()

    def _expire(self) -> None:
        self._deadline = None
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()


def server_for(app: FastAPI, verbose: bool = False, idle_s: float = 5.0) -> uvicorn.Server:
    """A uvicorn server: connections idle for ``idle_s`` (no request head) are closed;
    SIGTERM/SIGINT stop it gracefully (in-flight requests finish, at most 10 s)."""
    config = uvicorn.Config(
        app,
        log_level="info" if verbose else "warning",
        access_log=verbose,
        timeout_keep_alive=int(idle_s),
        timeout_graceful_shutdown=10,
        backlog=2048,
        lifespan="on",
        http=_DeadlineH11,
    )
    return uvicorn.Server(config)


def serve(app: FastAPI, sock: socket.socket, verbose: bool = False) -> None:
    """Serve on ``sock`` until SIGINT/SIGTERM."""
    server_for(app, verbose).run(sockets=[sock])


class ServerThread:
    """The server on a background thread (tests, benchmarks): ``with ServerThread(app) as s:``
    then ``s.url``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, idle_s: float = 5.0):
        self.app = app
        self.sock = bind(host, port)
        self.server = server_for(app, idle_s=idle_s)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="attngan-serve", daemon=True)  # fmt: skip
        host, port = self.sock.getsockname()[:2]
        self.address = (host, port)
        self.url = f"http://{host}:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("attngan-serve did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
