"""Throughput of FID feature extraction (``ganlab_common.metrics``), and digit-classifier training.

For each device and batch size it runs ``inception_features`` on random images
in [-1, 1] and prints images/s as a Markdown table. ``--size 28`` feeds grey
28x28 digits, so the time includes the bilinear resize to 299 on the device.
One warm-up batch is not timed. ``--classifier`` also times one training run of
the held-out digit classifier (1,000 steps on the 4,000 embedded MNIST digits)
and prints its held-out accuracy.

Usage::

    uv run python bench/fid_throughput.py                       # CPU (and CUDA when present)
    uv run python bench/fid_throughput.py --devices cuda --batch-sizes 50 200 500 --images 2000
    uv run python bench/fid_throughput.py --classifier
    uv run python bench/fid_throughput.py --threads 1 --batch-sizes 10 50
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from ganlab_common.metrics import inception_features, load_inception, train_digit_classifier


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(device: torch.device, batch_size: int, n_images: int, size: int,
                      channels: int) -> float:
    """Images/s of ``inception_features`` on ``n_images`` (>= one batch) after a warm-up batch."""
    model = load_inception(device)
    gen = torch.Generator().manual_seed(0)
    batch = torch.rand(batch_size, channels, size, size, generator=gen) * 2 - 1
    inception_features(batch, model, batch_size, device)  # warm-up (cuDNN autotune, allocator)
    n_batches = max(1, round(n_images / batch_size))
    sync(device)
    start = time.perf_counter()
    for _ in range(n_batches):
        inception_features(batch, model, batch_size, device)
    sync(device)
    return n_batches * batch_size / (time.perf_counter() - start)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=None,
                        help="cpu and/or cuda (default: cpu, plus cuda when available)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 10, 50])
    parser.add_argument("--images", type=int, default=100, help="images timed per entry")
    parser.add_argument("--size", type=int, default=299, help="input side (resized to 299)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op CPU threads (default: torch's choice)")
    parser.add_argument("--classifier", action="store_true",
                        help="also time training the held-out digit classifier")
    args = parser.parse_args()
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.threads:
        torch.set_num_threads(args.threads)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}; {os.cpu_count()} CPUs, load average {load}; "
          f"input [N, {args.channels}, {args.size}, {args.size}]")
    print("| device | batch size | images/s |")
    print("|---|---:|---:|")
    for name in devices:
        device = torch.device(name)
        for batch_size in args.batch_sizes:
            rate = images_per_second(device, batch_size, args.images, args.size, args.channels)
            print(f"| {name} ({describe(device)}) | {batch_size} | {rate:.1f} |", flush=True)

    if args.classifier:
        for name in devices:
            start = time.perf_counter()
            model = train_digit_classifier(device=name, seed=0)
            seconds = time.perf_counter() - start
            print(f"digit classifier on {name}: trained in {seconds:.1f} s, "
                  f"held-out accuracy {model.heldout_accuracy:.4f}")


if __name__ == "__main__":
    main()
