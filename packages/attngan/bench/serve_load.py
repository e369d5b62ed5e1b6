"""Loopback load on attngan-serve: N requests from C concurrent clients.

    uv run python packages/attngan/bench/serve_load.py --netG output/00001-attngan/netG.pt \
        [--requests 200] [--clients 8] [--count 1] [--device cpu]

Starts the server in-process on 127.0.0.1:<free port>, sends POST /generate with captions
drawn from the vocabulary's own words (plus 10% requests with an out-of-vocabulary caption,
which must get 422), and prints one JSON line: errors, status counts, p50/p90/p99 latency,
requests/s and how many batched generator calls served them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from attngan.sample import load_generator
from attngan.serve import make_server

CAPTIONS = [
    "a small red bird",
    "this bird is blue and large",
    "a large red seven in the upper left",
    "a small blue two in the centre",
    "two digits : a small green 3 beside a large yellow 8",
    "a white digit 5 in the lower right",
    "a magenta four to the left of a cyan nine",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--netG", required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--max_batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = load_generator(args.netG, torch.device(args.device))
    server = make_server(gen, "127.0.0.1", 0, args.max_batch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address
    rng = random.Random(0)
    bodies = []
    for i in range(args.requests):
        caption = "zebra qwerty" if rng.random() < 0.1 else rng.choice(CAPTIONS)
        bodies.append({"caption": caption, "seed": i, "count": args.count})

    def one(body):
        conn = http.client.HTTPConnection(host, port, timeout=300)
        start = time.perf_counter()
        try:
            conn.request(
                "POST", "/generate", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError as exc:
            status = f"error {type(exc).__name__}"
        finally:
            conn.close()
        return body["caption"], status, time.perf_counter() - start

    one(bodies[0])  # warm-up
    batches_before = server.batcher.batches
    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - start
    server.shutdown()
    server.batcher.close()
    ok = [t for c, s, t in results if s == 200]
    expected = sum((s == 422) == (c == "zebra qwerty") for c, s, _ in results)
    statuses: dict = {}
    for _, s, _ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    print(json.dumps({
        "requests": len(results), "clients": args.clients, "images_per_request": args.count,
        "device": args.device, "statuses": statuses,
        "unexpected": len(results) - expected,
        "p50_ms": round(float(np.percentile(ok, 50)) * 1000, 1),
        "p90_ms": round(float(np.percentile(ok, 90)) * 1000, 1),
        "p99_ms": round(float(np.percentile(ok, 99)) * 1000, 1),
        "requests_per_s": round(len(results) / wall, 2),
        "generator_calls": server.batcher.batches - batches_before,
        "image_size": server.image_size,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
