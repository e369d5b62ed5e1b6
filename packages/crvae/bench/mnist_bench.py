"""MNIST fidelity numbers of crvae at one fixed budget (CPU is fine; ~10-15 min per model).

For each ``-latentType`` it trains on the 4,000 embedded training digits (dynamic
binarisation) and measures on the 1,000 held-out ones (one fixed binarisation):

* ``nll``: importance-sampled negative log-likelihood (nats) of the best-VLB checkpoint,
  ``--final-k`` samples, on ``--n-test`` test digits (the paper's metric for conv/baseline/lstm);
* ``recon_bce``: summed BCE per digit of the posterior-mean reconstruction;
* ``fid``: FID (pytorch-fid Inception) of ``--n-fid`` samples against as many test digits;
* ``conf``: mean max-probability the held-out digit classifier gives the samples;
* ``cond_acc`` (conditional types): fraction of samples drawn for class y classified as y.

Usage::

    OMP_NUM_THREADS=1 uv run python packages/crvae/bench/mnist_bench.py \\
        --types conv baseline lstm acvaegan --epochs 10 --out runs/crvae-bench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from crvae.config import Config
from crvae.data import fixed_binarize, load_dataset
from crvae.sample import load_generator
from crvae.train import train
from ganlab_common.metrics import classify_digits, fid, load_digit_classifier


def _measure(run: Path, n_fid: int, n_test: int, seed: int) -> dict:
    model, state = load_generator(run / "best.pt" if (run / "best.pt").exists()
                                  else sorted((run / "checkpoints").glob("*.pt"))[-1], "cpu")
    spec = model.spec
    test = load_dataset("mnist", "", "test", 28, spec.conditional)
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.stack([test[i][1] for i in range(len(test))])
    out: dict = {"epoch_of_best": state["epoch"]}
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if spec.has_encoder:
            xb = fixed_binarize(x[:n_test], seed)
            yb = y[:n_test] if spec.conditional else None
            mu, _ = model.encode(xb, yb)
            logits, _ = model.decode(mu, yb)
            bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="none")
            out["recon_bce"] = bce.flatten(1).sum(1).mean().item()
        cls = torch.arange(n_fid) % 10
        ys = F.one_hot(cls, 10).float() * 2 - 1 if spec.conditional else None
        samples = model.to_image(model.decode(model.sample_prior(n_fid, ys, gen), ys)[0])
    clf = load_digit_classifier("cpu")
    probs = classify_digits(clf, samples)
    out["conf"] = probs.max(1).values.mean().item()
    if spec.conditional:
        out["cond_acc"] = (probs.argmax(1) == cls).float().mean().item()
    out["fid"] = fid(samples, x[:n_fid] * 2 - 1)
    final = [json.loads(r) for r in (run / "stats.jsonl").read_text().splitlines()]
    out["nll"] = next((r["final_nll"] for r in final if "final_nll" in r), None)
    out["best_nll_k5"] = next((r["best_nll"] for r in reversed(final) if "best_nll" in r), None)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--types", nargs="+", default=["conv", "baseline", "lstm", "acvaegan"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=1e-3)
    p.add_argument("--final-k", type=int, default=100)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--n-fid", type=int, default=300)
    p.add_argument("--rho", type=float, default=0.05, help="acvaegan: -rho")
    p.add_argument("--rho-entreg", type=float, default=0.05, help="acvaegan: -rho_entreg")
    p.add_argument("--attention-gain", default="steps", choices=["steps", "one"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="runs/crvae-bench")
    args = p.parse_args()
    results = {}
    for latent_type in args.types:
        t0 = time.time()
        cfg = Config(dataset="mnist", latentType=latent_type, nEpochs=args.epochs,
                     baseChannels=args.base_channels, LR=args.lr, alpha=args.alpha, beta=0.0,
                     kappa=0.0, nSample=5, nSampleFinal=args.final_k, nTest=args.n_test,
                     manualSeed=args.seed, save=args.out, device="cpu", epochStep=0,
                     rho=args.rho, rho_entreg=args.rho_entreg,
                     attention_gain=args.attention_gain)
        run = train(cfg)
        train_s = time.time() - t0
        res = _measure(run, args.n_fid, args.n_test, args.seed)
        res.update(run=str(run), train_seconds=round(train_s), epochs=args.epochs,
                   iterations=_iterations(Path(run)))
        results[latent_type] = res
        print(latent_type, json.dumps(res), flush=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"result-{latent_type}.json").write_text(json.dumps(res, indent=2))


def _iterations(run: Path) -> int:
    """Training iterations the run logged (the -nVal held-out digits are not trained on)."""
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()
             if line.strip()]
    return int(max(steps)) if steps else 0


if __name__ == "__main__":
    main()
