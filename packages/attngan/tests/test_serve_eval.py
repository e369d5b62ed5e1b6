import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from click.testing import CliRunner

from attngan.cli import evaluate
from attngan.sample import find_generator, load_generator
from attngan.serve import MAX_BODY, make_server


@pytest.fixture
def server(trained):
    gen = load_generator(find_generator(trained), torch.device("cpu"))
    srv = make_server(gen, "127.0.0.1", 0, max_batch=8)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    srv.batcher.close()
    thread.join(timeout=5)


def _request(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(*srv.server_address, timeout=60)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_generate_returns_png_and_json(server):
    status, headers, body = _request(
        server, "POST", "/generate", {"caption": "a small red bird qwerty zebra", "seed": 3}
    )
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert headers["X-Unknown-Words"] == "qwerty,zebra" and headers["X-Seed"] == "3"
    status, _, body = _request(
        server,
        "POST",
        "/generate",
        {"caption": "a small red bird", "seed": 3, "count": 2},
        {"Accept": "application/json"},
    )
    data = json.loads(body)
    assert status == 200 and len(data["images"]) == 2 and data["seed"] == 3
    status, _, body = _request(server, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = _request(server, "GET", "/openapi.json")
    assert status == 200 and "/generate" in json.loads(body)["paths"]


def test_bad_requests_get_4xx_and_the_server_survives(server):
    cases = [
        ({"caption": ""}, 422, "caption"),
        ({"caption": "zebra qwerty"}, 422, "qwerty"),
        ({"caption": "a bird", "count": 9}, 422, "count"),
        ({"caption": "a bird", "seed": -1}, 422, "seed"),
        ({"caption": "a bird", "colour": "red"}, 422, "colour"),
        (b"{not json", 400, "JSON"),
        (b"x" * (MAX_BODY + 1), 413, "bytes"),
    ]
    for body, code, word in cases:
        status, _, payload = _request(server, "POST", "/generate", body)
        assert status == code and word in json.loads(payload)["error"], (body, payload)
    assert _request(server, "GET", "/nope")[0] == 404
    assert _request(server, "POST", "/generate", {"caption": "a bird"})[0] == 200


def test_concurrent_requests_are_batched_and_seeded(server):
    def one(i):
        return _request(server, "POST", "/generate",
                        {"caption": ["a small red bird", "a large blue bird"][i % 2],
                         "seed": i % 2}, {"Accept": "application/json"})  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert all(status == 200 for status, _, _ in results)
    images = [json.loads(body)["images"][0] for _, _, body in results]
    assert len(set(images[0::2])) == 1 and len(set(images[1::2])) == 1  # seed decides
    assert server.batcher.batches < 16  # some requests shared a generator call


def test_eval_r_precision(trained, cub_dir):
    result = CliRunner().invoke(evaluate, [
        "--outdir", str(trained), "--data_dir", str(cub_dir), "--count", "200",
        "--metrics", "rprec,rprec_real,is", "--folds", "2", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert 0 <= data["r_precision"] <= 1 and 0 <= data["r_precision_real"] <= 1
    assert data["inception_score"] is None and "weights" in data["inception_score_note"]
    assert (trained / "00001-attngan" / "metric-eval.jsonl").is_file()


@pytest.mark.slow
def test_eval_fid(trained, cub_dir):
    result = CliRunner().invoke(evaluate, [
        "--outdir", str(trained), "--data_dir", str(cub_dir), "--count", "16",
        "--metrics", "fid", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["fid"] > 0
