"""Load and abuse of attngan-serve, on 127.0.0.1 only, every phase bounded in count and time.

    uv run python packages/attngan/bench/serve_load.py [--netG netG.pt] [--clients 50]
        [--requests 500] [--sequential 1000] [--max_seconds 600] [--out result.json]

Starts ``attngan-serve --port 0`` as a child process (without ``--netG``: random weights in
the digits recipe's architecture, GF 16, stages 32/64 px, which costs the same time as
trained ones) and runs, against it:

1. load: ``--requests`` POST /generate from ``--clients`` concurrent clients (10% of them
   with only unknown words, which must get 422): p50/p90/p99, requests/s, errors;
2. idle: ``--idle`` connections that send nothing: the server's CPU while they are open,
   a request served meanwhile, and whether the server closes them;
3. slow client: one that sends half its headers and stalls while others are served;
4. a 10 MB body (declared, and chunked): 413, the server's RSS before and after;
5. malformed bodies (bad JSON, a 5,000-digit integer, 8,000-deep nesting, wrong types,
   invalid UTF-8, ...) and every other method: 4xx JSON answers only;
6. clients that disconnect before the answer;
7. ``--sequential`` requests one after another: RSS before and after;
8. SIGTERM with a request in flight: it is answered and the server exits 0;

then counts tracebacks in the server's log.  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

CAPTIONS = [
    "a large red seven in the upper left",
    "a small blue two in the centre",
    "two digits : a small green 3 beside a large yellow 8",
    "a white digit 5 in the lower right",
    "a magenta four to the left of a cyan nine",
]
UNKNOWN = "zebra qwerty"
HOST = "127.0.0.1"


def random_generator(path: Path) -> Path:
    """The digits recipe's G (GF 16, R_NUM 1, 32/64 px) with random weights, as netG.pt."""
    from attngan.config import load_config
    from attngan.damsm import build_encoders
    from attngan.models import build_generator
    from attngan.text import Vocabulary, tokenize
    from attngan.train import export_state

    torch.manual_seed(0)
    cfg = load_config("digits_attn2", ["GAN.GF_DIM=16", "GAN.DF_DIM=16", "GAN.R_NUM=1",
                                       "GANLAB.IMAGE_ENCODER=tiny"])  # fmt: skip
    words = sorted({w for c in CAPTIONS for w in tokenize(c)} | {"one", "six", "zero"})
    enc = build_encoders(cfg, Vocabulary(["<end>", *words]), quiet=True)
    net_g = build_generator(cfg).eval()
    torch.save(export_state(cfg, enc, net_g, [p.detach().clone() for p in net_g.parameters()]),
               path)  # fmt: skip
    return path


# ---------------------------------------------------------------------------------------------
# Client side


def post(port: int, body, path: str = "/generate", headers: dict | None = None, timeout=120):
    """``(status or 'error <name>', seconds)`` of one request on a fresh connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    start = time.perf_counter()
    try:
        conn.request("POST", path, data, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        response.read()
        status = response.status
    except OSError as exc:
        status = f"error {type(exc).__name__}"
    finally:
        conn.close()
    return status, time.perf_counter() - start


def call(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    """``(status, content type, body)``."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def _closed_by_server(sock: socket.socket, wait_s: float) -> bool:
    sock.settimeout(wait_s)
    try:
        return sock.recv(1) == b""
    except (TimeoutError, OSError):
        return False
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# Phases


def load(port: int, requests: int, clients: int, deadline: float) -> dict:
    bodies = [{"caption": UNKNOWN if i % 10 == 9 else CAPTIONS[i % len(CAPTIONS)], "seed": i}
              for i in range(requests)]  # fmt: skip

    def one(body):
        if time.monotonic() > deadline:
            return body["caption"], "skipped (time bound)", 0.0
        return body["caption"], *post(port, body)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, bodies))
    wall = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for _, status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    ok = [t for _, s, t in results if s == 200]
    errors = sum(s != (422 if c == UNKNOWN else 200) for c, s, _ in results)
    return {"requests": requests, "clients": clients, "statuses": statuses, "errors": errors,
            "p50_ms": _ms(ok, 50), "p90_ms": _ms(ok, 90), "p99_ms": _ms(ok, 99),
            "requests_per_s": round(len(results) / wall, 1)}  # fmt: skip


def idle(port: int, pid: int, n: int, idle_s: float) -> dict:
    socks = [socket.create_connection((HOST, port), timeout=10) for _ in range(n)]
    cpu0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(min(2.0, idle_s / 2))
    busy = (cpu_s(pid) - cpu0) / (time.monotonic() - t0)
    served = post(port, {"caption": CAPTIONS[0]})[0]
    closed = sum(_closed_by_server(s, idle_s + 5) for s in socks)
    return {"idle_connections": n, "server_cpu_while_idle": f"{busy:.0%}",
            "request_meanwhile": served, "closed_by_server": closed}  # fmt: skip


def slow_client(port: int, idle_s: float) -> dict:
    stalled = socket.create_connection((HOST, port), timeout=10)
    stalled.sendall(b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
    results = [post(port, {"caption": CAPTIONS[i % 5], "seed": i}) for i in range(20)]
    ok = [t for s, t in results if s == 200]
    return {"others_served": f"{len(ok)}/20", "their_p50_ms": _ms(ok, 50),
            "stalled_closed_by_server": _closed_by_server(stalled, idle_s + 5)}  # fmt: skip


def _send_raw(port: int, head: bytes, chunks, chunked: bool) -> str:
    sock = socket.create_connection((HOST, port), timeout=30)
    try:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server may answer 413 and close before the whole body is sent
    try:
        reply = sock.recv(64)
    except OSError as exc:
        return f"error {type(exc).__name__}"
    finally:
        sock.close()
    match = re.match(rb"HTTP/1\.1 (\d+)", reply)
    return match.group(1).decode() if match else f"no answer ({reply[:20]!r})"


def big_body(port: int, pid: int) -> dict:
    size, block = 10 * 1024 * 1024, b"x" * (1024 * 1024)
    before = rss_kib(pid)
    declared = (f"POST /generate HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\n\r\n").encode()  # fmt: skip
    streamed = (b"POST /generate HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    statuses = [_send_raw(port, declared, [block] * 10, False),
                _send_raw(port, streamed, [block] * 10, True)]  # fmt: skip
    time.sleep(0.5)
    return {"body_mb": size // 2**20, "statuses (declared, chunked)": statuses,
            "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(rss_kib(pid) / 1024, 1)}  # fmt: skip


MALFORMED = {
    "not JSON": b"{caption: a red seven",
    "5,000-digit integer": b'{"caption": "a red seven", "seed": ' + b"9" * 5000 + b"}",
    "4,000-digit integer": b'{"caption": "a red seven", "seed": ' + b"9" * 4000 + b"}",
    "8,000-deep nesting": b"[" * 8_000 + b"]" * 8_000,
    "deep nesting in a field": b'{"caption": ' + b"[" * 8_000 + b"]" * 8_000 + b"}",
    "invalid UTF-8": b'{"caption": "\xff\xfe red"}',
    "empty body": b"",
    "JSON null": b"null",
    "a list": b"[1, 2, 3]",
    "NaN seed": b'{"caption": "a red seven", "seed": NaN}',
    "float count": b'{"caption": "a red seven", "count": 2.5}',
    "string count": b'{"caption": "a red seven", "count": "2"}',
    "bool seed": b'{"caption": "a red seven", "seed": true}',
    "count 1e9": b'{"caption": "a red seven", "count": 1000000000}',
    "caption 10,000 chars": json.dumps({"caption": "red " * 2500}).encode(),
    "unknown field": b'{"caption": "a red seven", "colour": "red"}',
    "empty caption": b'{"caption": ""}',
    "only unknown words": json.dumps({"caption": UNKNOWN}).encode(),
    "duplicate keys": b'{"caption": "a red seven", "caption": 7}',
}


def malformed(port: int) -> dict:
    out = {}
    for name, body in MALFORMED.items():
        status, kind, _ = call(port, "POST", "/generate", body,
                               {"Content-Type": "application/json"})  # fmt: skip
        out[name] = status if kind == "application/json" else f"{status} {kind}"
    out["text/plain body"] = call(port, "POST", "/generate", b'{"caption": "a red seven"}',
                                  {"Content-Type": "text/plain"})[0]  # fmt: skip
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, kind, _ = call(port, method, "/generate")
        out[f"{method} /generate"] = status if kind == "application/json" else f"{status} {kind}"
    return out


def early_disconnects(port: int, n: int) -> dict:
    body = json.dumps({"caption": CAPTIONS[2], "count": 8}).encode()
    head = (f"POST /generate HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    for _ in range(n):
        sock = socket.create_connection((HOST, port), timeout=10)
        sock.sendall(head + body)
        sock.close()
    time.sleep(1.0)
    return {"clients": n, "server_then": post(port, {"caption": CAPTIONS[0]})[0]}


def sequential(port: int, pid: int, n: int, deadline: float) -> dict:
    for i in range(20):  # warm-up: allocator pools, PNG encoder
        post(port, {"caption": CAPTIONS[i % 5], "seed": i})
    before, done, failed = rss_kib(pid), 0, 0
    for i in range(n):
        if time.monotonic() > deadline:
            break
        failed += post(port, {"caption": CAPTIONS[i % 5], "seed": i})[0] != 200
        done += 1
    return {"requests": done, "failed": failed, "rss_before_mib": round(before / 1024, 1),
            "rss_after_mib": round(rss_kib(pid) / 1024, 1)}  # fmt: skip


def sigterm(port: int, proc: subprocess.Popen) -> dict:
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(
        status=post(port, {"caption": CAPTIONS[2], "count": 8})[0]))  # fmt: skip
    worker.start()
    time.sleep(0.05)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    worker.join(timeout=30)
    code = proc.wait(timeout=30)
    return {"in_flight_request": result.get("status"), "exit_code": code,
            "exit_s": round(time.monotonic() - start, 2)}  # fmt: skip


# ---------------------------------------------------------------------------------------------


def start_server(net_g: Path, log, threads: int, max_batch: int) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", "from attngan.cli import serve; serve()", "--netG", str(net_g),
           "--host", HOST, "--port", "0", "--device", "cpu",
           "--max_batch", str(max_batch)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://[\d.]+:(\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"attngan-serve did not start: {line!r}")
    port = int(match.group(1))
    for _ in range(300):
        try:
            if call(port, "GET", "/health")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("attngan-serve never answered /health")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--netG", default=None, help="default: random digits-recipe weights")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--idle", type=int, default=41)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    parser.add_argument("--max_batch", type=int, default=16)
    parser.add_argument("--max_seconds", type=float, default=600, help="bound of the load phases")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    idle_s = 5.0  # attngan-serve's idle timeout
    with tempfile.TemporaryDirectory() as tmp:
        net_g = Path(args.netG) if args.netG else random_generator(Path(tmp) / "netG.pt")
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            proc, port = start_server(net_g, log, args.threads, args.max_batch)
            try:
                deadline = time.monotonic() + args.max_seconds
                post(port, {"caption": CAPTIONS[0]})  # warm-up
                generator = str(args.netG or "random weights, digits recipe size")
                report = {"machine_load_1min": os.getloadavg()[0],
                          "server_threads": args.threads, "generator": generator}  # fmt: skip
                report["load"] = load(port, args.requests, args.clients, deadline)
                report["idle"] = idle(port, proc.pid, args.idle, idle_s)
                report["slow_client"] = slow_client(port, idle_s)
                report["big_body"] = big_body(port, proc.pid)
                report["malformed"] = malformed(port)
                report["early_disconnects"] = early_disconnects(port, 20)
                report["sequential"] = sequential(port, proc.pid, args.sequential, deadline)
                report["sigterm"] = sigterm(port, proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
        text = log_path.read_text()
        report["server_log"] = {"lines": len(text.splitlines()),
                                "tracebacks": text.count("Traceback"),
                                "broken_pipe": text.count("BrokenPipe")}  # fmt: skip
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
