"""attngan-serve on FastAPI + uvicorn: the API, its limits, and the page in a real browser.

The generator is built from random weights (no training): tiny sizes, 3 stages (16/32/64 px).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="attngan-serve needs the extra attngan[serve]")

from attngan.config import load_config  # noqa: E402
from attngan.damsm import build_encoders  # noqa: E402
from attngan.models import build_generator  # noqa: E402
from attngan.sample import load_generator  # noqa: E402
from attngan.serve import MAX_BODY, ServerThread, make_app  # noqa: E402
from attngan.text import Vocabulary  # noqa: E402

TINY = ["TEXT.EMBEDDING_DIM=32", "GANLAB.WORD_EMBEDDING_DIM=16", "GANLAB.IMAGE_ENCODER=tiny",
        "TREE.BRANCH_NUM=3", "TREE.BASE_SIZE=16", "GAN.GF_DIM=4", "GAN.Z_DIM=8",
        "GAN.CONDITION_DIM=8", "GAN.R_NUM=1"]  # fmt: skip
WORDS = ["<end>", "a", "bird", "blue", "large", "red", "seven", "small", "the"]


def write_tiny_generator(path: Path, overrides: list[str]) -> Path:
    """A ``netG.pt`` export of random tiny weights (what ``attngan-train`` writes)."""
    torch.manual_seed(0)
    cfg = load_config("bird_attn2", overrides)
    enc = build_encoders(cfg, Vocabulary(list(WORDS)), quiet=True)
    state = {
        "kind": "attngan-generator",
        "config": cfg,
        "vocab": list(WORDS),
        "netG": build_generator(cfg).state_dict(),
        "text_encoder": enc.text.state_dict(),
        "image_encoder": enc.image.projection_state(),
        "backbone": enc.image.backbone.kind,
    }
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = write_tiny_generator(tmp_path_factory.mktemp("gen") / "netG.pt", TINY)
    gen = load_generator(path, torch.device("cpu"))
    with ServerThread(make_app(gen, max_batch=8), idle_s=1) as srv:
        yield srv


def request(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(*srv.address, timeout=60)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _size(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


def test_generate_png_json_stages_and_attention(server):
    status, headers, body = request(
        server, "POST", "/generate", {"caption": "a small red bird qwerty zebra", "seed": 3}
    )
    assert status == 200 and headers["content-type"] == "image/png"
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert headers["x-unknown-words"] == "qwerty,zebra" and headers["x-seed"] == "3"
    body = {"caption": "a small red bird", "seed": 3, "count": 2, "stages": True, "attention": True}
    status, _, payload = request(server, "POST", "/generate", body)
    data = json.loads(payload)
    assert status == 200 and data["seed"] == 3 and data["words"] == ["a", "small", "red", "bird"]
    assert [_size(b) for b in data["images"]] == [(64, 64)] * 2
    assert [[_size(s) for s in image] for image in data["stages"]] == [
        [(16, 16), (32, 32), (64, 64)]
    ] * 2
    stages = data["attention"][0]
    assert [s["size"] for s in stages] == [16, 32] and all(len(s["maps"]) == 4 for s in stages)
    assert _size(stages[1]["maps"][0]) == (64, 64)


def test_original_bird_route(server):
    status, _, payload = request(
        server, "POST", "/api/v1.0/bird", {"caption": "a red bird", "x": 1}
    )
    bird = json.loads(payload)["bird"]
    assert status == 201 and bird["caption"] == "a red bird" and bird["elapsed"] > 0
    for key in ("small", "medium", "large", "map1", "map2"):
        assert bird[key].startswith("data:image/png;base64,")
    assert _size(bird["large"].split(",", 1)[1]) == (64, 64)


def test_health_docs_page_and_schema(server):
    status, _, payload = request(server, "GET", "/health")
    assert status == 200 and json.loads(payload)["stage_sizes"] == [16, 32, 64]
    status, _, payload = request(server, "GET", "/openapi.json")
    schema = json.loads(payload)
    assert {"/generate", "/api/v1.0/bird", "/health"} <= set(schema["paths"])
    assert "GenerateRequest" in schema["components"]["schemas"]
    status, headers, payload = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"/static/app.js" in payload and b"http" not in payload.replace(b"http-equiv", b"")
    assert request(server, "GET", "/static/app.js")[0] == 200
    status, _, payload = request(server, "GET", "/docs")
    assert status == 200 and b"/swagger/swagger-ui-bundle.js" in payload
    assert b"cdn" not in payload and request(server, "GET", "/swagger/swagger-ui.css")[0] == 200


BAD = [
    ({"caption": ""}, 422, "caption: empty"),
    ({"caption": "  "}, 422, "caption: empty"),
    ({"caption": "zebra qwerty"}, 422, "qwerty"),
    ({"caption": "a" * 501}, 422, "500 characters"),
    ({"caption": "a bird", "count": 9}, 422, "count"),
    ({"caption": "a bird", "count": "2"}, 422, "count"),
    ({"caption": "a bird", "seed": -1}, 422, "seed"),
    ({"caption": "a bird", "seed": True}, 422, "seed"),
    ({"caption": "a bird", "seed": 2**70}, 422, "seed"),
    ({"caption": "a bird", "colour": "red"}, 422, "colour"),
    ({"caption": 7}, 422, "caption"),
    ([1, 2], 422, "body"),
    (b"{not json", 400, "JSON"),
    (b'{"caption": "a", "seed": ' + b"9" * 5000 + b"}", 400, "body"),
    (b"[" * 5000 + b"]" * 5000, 400, "body"),
    (b"x" * (MAX_BODY + 1), 413, "bytes"),
]


@pytest.mark.parametrize("body,code,text", BAD, ids=[str(c) + ":" + t for _, c, t in BAD])
def test_bad_bodies_get_4xx_with_a_message(server, body, code, text):
    status, headers, payload = request(server, "POST", "/generate", body)
    assert status == code and text in json.loads(payload)["error"], payload
    assert headers["content-type"] == "application/json"


def test_a_dcgan_generator_serves_its_one_stage(tmp_path):
    path = write_tiny_generator(tmp_path / "netG.pt", [*TINY, "GAN.B_DCGAN=true"])
    gen = load_generator(path, torch.device("cpu"))
    with ServerThread(make_app(gen)) as srv:
        body = {"caption": "a red bird", "stages": True, "attention": True}
        data = json.loads(request(srv, "POST", "/generate", body)[2])
        assert [_size(s) for s in data["stages"][0]] == [(64, 64)]
        assert [len(s["maps"]) for s in data["attention"][0]] == [3, 3]
        bird = json.loads(request(srv, "POST", "/api/v1.0/bird", {"caption": "a red bird"})[2])
        assert {"large", "map1", "map2"} <= set(bird["bird"]) and "small" not in bird["bird"]
        assert json.loads(request(srv, "GET", "/health")[2])["stage_sizes"] == [64]


def test_a_failing_generator_gives_json_500_and_the_server_goes_on(tmp_path):
    gen = load_generator(write_tiny_generator(tmp_path / "netG.pt", TINY), torch.device("cpu"))
    forward = gen.net_g.forward
    gen.net_g.forward = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory"))
    with ServerThread(make_app(gen)) as srv:
        status, headers, payload = request(srv, "POST", "/generate", {"caption": "a red bird"})
        assert status == 500 and "out of memory" in json.loads(payload)["error"]
        gen.net_g.forward = forward
        assert request(srv, "POST", "/generate", {"caption": "a red bird"})[0] == 200


def test_methods_routes_and_content_type_answer_in_json(server):
    cases = [("GET", "/generate", 405), ("PUT", "/health", 405),
             ("DELETE", "/api/v1.0/bird", 405), ("GET", "/nope", 404)]  # fmt: skip
    for method, path, code in cases:
        status, headers, payload = request(server, method, path)
        assert status == code and headers["content-type"] == "application/json"
        assert path in json.loads(payload)["error"]
    status, _, payload = request(
        server, "POST", "/generate", {"caption": "a bird"}, {"Content-Type": "text/plain"}
    )
    assert status == 415 and "Content-Type" in json.loads(payload)["error"]
    assert request(server, "POST", "/generate", {"caption": "a bird"})[0] == 200


def test_concurrent_requests_are_batched_and_seeded(server):
    batcher = server.app.state.batcher
    before = batcher.batches

    def one(i):
        caption = ["a small red bird", "a large blue bird"][i % 2]
        body, accept = {"caption": caption, "seed": i % 2}, {"Accept": "application/json"}
        status, _, payload = request(server, "POST", "/generate", body, accept)
        return status, json.loads(payload)["images"][0]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(32)))
    assert all(status == 200 for status, _ in results)
    images = [image for _, image in results]
    assert len(set(images[0::2])) == 1 and len(set(images[1::2])) == 1  # the seed decides
    assert batcher.batches - before < 32  # some requests shared a generator call


def test_idle_and_stalled_connections_time_out_and_others_are_served(server):
    idle = socket.create_connection(server.address, timeout=10)
    stalled = socket.create_connection(server.address, timeout=10)
    stalled.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\n")  # headers never finish
    assert request(server, "POST", "/generate", {"caption": "a bird"})[0] == 200
    start = time.monotonic()
    assert idle.recv(1) == b""  # closed by the server (idle_s=1)
    assert stalled.recv(1) == b""  # and so is the one that stalled inside its headers
    assert time.monotonic() - start < 8
    idle.close()
    stalled.close()


def test_early_disconnect_is_quiet(server, capfd):
    for _ in range(3):
        sock = socket.create_connection(server.address, timeout=10)
        body = json.dumps({"caption": "a red bird", "count": 8}).encode()
        head = "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        sock.close()  # before the answer
    assert request(server, "GET", "/health")[0] == 200
    time.sleep(0.3)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err


# ---------------------------------------------------------------------------------------------
# The page in Debian's chromium (through chromium-driver and selenium)


def _chrome():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    driver_path = shutil.which("chromedriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not driver_path or not browser:
        pytest.skip("no chromium + chromedriver (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,1300"):  # fmt: skip
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def test_page_in_a_real_browser(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome()
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: "16 / 32 / 64" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "caption").send_keys("a small red bird")
        count = driver.find_element(By.ID, "count")
        count.clear()
        count.send_keys("2")
        driver.find_element(By.ID, "seed").send_keys("7")
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "img.final")) == 2)
        finals = driver.find_elements(By.CSS_SELECTOR, "img.final")
        natural = "return [arguments[0].naturalWidth, arguments[0].naturalHeight]"
        sizes = [driver.execute_script(natural, f) for f in finals]
        assert sizes == [[64, 64], [64, 64]]
        assert len(driver.find_elements(By.CSS_SELECTOR, "img.stage")) == 2 * 3
        words = driver.find_elements(By.CSS_SELECTOR, ".words figcaption")
        assert [w.text for w in words[:4]] == ["a", "small", "red", "bird"]
        assert len(words) == 2 * 2 * 4  # images x attention stages x words
        assert driver.save_screenshot(str(tmp_path / "page.png"))
        with Image.open(tmp_path / "page.png") as shot:
            assert shot.size[0] >= 800

        caption = driver.find_element(By.ID, "caption")
        caption.clear()
        driver.find_element(By.ID, "generate").click()
        error = driver.find_element(By.ID, "error")
        wait.until(lambda d: error.is_displayed())
        assert error.text == "caption: empty; type a few words"
        caption.send_keys("zebra qwerty")
        driver.find_element(By.ID, "generate").click()
        wait.until(lambda d: "vocabulary" in error.text)
        assert "qwerty" in error.text and "{" not in error.text
    finally:
        driver.quit()
