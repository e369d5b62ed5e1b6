"""One worker thread owns the generator; concurrent requests are merged into one batch.

Used by :mod:`attngan.serve`; it needs only torch (no web framework).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from .sample import Generator, generate, noise_dim, noise_for

__all__ = ["BatchingGenerator", "Busy", "Result"]


class Busy(RuntimeError):
    """The queue already holds ``max_queue`` images: the caller should retry later."""


@dataclass
class Result:
    """What one request gets back: per image, every stage and every attention map.

    ``stages[k]``: ``[n, 3, S_k, S_k]`` in [-1, 1]; ``attention[k]``: ``[n, T, s_k, s_k]``
    with T the request's own known words (padding columns removed).
    """

    stages: list[torch.Tensor]
    attention: list[torch.Tensor]


@dataclass
class _Job:
    ids: list[int]
    seeds: list[int]
    future: Future = field(default_factory=Future)


class BatchingGenerator:
    """Batch requests on the model's device, one generator call at a time.

    The worker takes the first waiting job, then keeps collecting jobs for ``wait_s``
    seconds or until ``max_batch`` images are queued, and runs G once.  Each image's noise
    comes from its own seed and BN is in eval mode, so a result does not depend on what it
    was batched with (padding words get no attention with the correct mask).  At most
    ``max_queue`` images wait; :meth:`submit` raises :class:`Busy` beyond that.
    """

    def __init__(
        self, gen: Generator, max_batch: int = 16, wait_s: float = 0.005, max_queue: int = 512
    ):
        self.gen = gen
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.batches = 0  # generator calls so far (for tests and logs)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._waiting = 0  # images queued or running
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="attngan-batcher", daemon=True)
        self._thread.start()

    def submit(self, ids: list[int], seeds: list[int]) -> Future:
        """A future of the :class:`Result` for caption ``ids`` (one image per seed)."""
        with self._lock:
            if self._waiting + len(seeds) > self.max_queue:
                raise Busy(f"{self._waiting} images are queued (at most {self.max_queue})")
            self._waiting += len(seeds)
        job = _Job(list(ids), list(seeds))
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker."""
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def _collect(self, first: _Job) -> list[_Job]:
        jobs, total = [first], len(first.seeds)
        deadline = time.monotonic() + self.wait_s
        while total < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self._jobs.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # keep the stop signal for the loop
                break
            jobs.append(job)
            total += len(job.seeds)
        return jobs

    def _run(self, jobs: list[_Job]) -> list[Result]:
        rows = [(job.ids, s) for job in jobs for s in job.seeds]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.int64)
        for i, (r, _) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        lens = torch.tensor([len(r) for r, _ in rows])
        noise = noise_for([s for _, s in rows], noise_dim(self.gen.cfg))
        stages, attention = generate(self.gen, ids, lens, noise)
        self.batches += 1
        results, start = [], 0
        for job in jobs:
            part = slice(start, start + len(job.seeds))
            words = len(job.ids)
            results.append(Result([s[part] for s in stages], [a[part, :words] for a in attention]))
            start += len(job.seeds)
        return results

    def _work(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs = self._collect(first)
            try:
                results = self._run(jobs)
            except Exception as exc:  # noqa: BLE001 - reported to every waiting request
                results = [exc] * len(jobs)
            with self._lock:
                self._waiting -= sum(len(job.seeds) for job in jobs)
            for job, result in zip(jobs, results):
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
