"""Does an untrained D32 learn real faces against G's untrained (flat grey) samples?

Trains D alone for 60 Adam steps (lr 1e-3, batch 16 real + 16 fake, the training loop's L2
and gradient clamp) and prints the loss, accuracy and logit spread every 20 steps, and the
gradient norm of each weight matrix at the first step:

    uv run python packages/facegan/bench/d32_init_probe.py --width 0.25 --D_L2 1e-4 --init eyescream
"""

from __future__ import annotations

import click
import torch
import torch.nn.functional as F

from facegan.data import DataSource, real_faces
from facegan.train import build_models
from facegan.training import regularise_and_clamp


@click.command()
@click.option("--width", type=float, default=1.0, show_default=True)
@click.option("--D_L2", "l2", type=float, default=1e-4, show_default=True)
@click.option("--init", type=click.Choice(["eyescream", "default"]), default="eyescream",
              show_default=True)
@click.option("--steps", type=int, default=60, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def main(width: float, l2: float, init: str, steps: int, seed: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    G, D = build_models(1, 32, 100, init, width)
    real = real_faces(DataSource("embedded"), 32, 1)
    opt = torch.optim.Adam(D.parameters(), lr=1e-3)
    target = torch.cat([torch.ones(16), torch.zeros(16)])
    for step in range(steps + 1):
        with torch.no_grad():
            fake = G(torch.randn(16, 100))
        logits = D(torch.cat([real[torch.randint(len(real), (16,))], fake]))
        loss = F.binary_cross_entropy_with_logits(logits, target)
        if step % 20 == 0:
            acc = ((logits > 0).float() == target).float().mean().item()
            print(f"width {width} D_L2 {l2} init {init} step {step}: loss {loss.item():.4f} "
                  f"acc {acc:.2f} logit std {logits.std().item():.2e}")
        opt.zero_grad()
        loss.backward()
        if step == 0:
            norms = [f"{p.grad.norm().item():.1e}" for p in D.parameters() if p.ndim > 1]
            print("  weight gradient norms (4 convs, 3 linears):", " ".join(norms))
        regularise_and_clamp(D.parameters(), 0.0, l2, 1.0)
        opt.step()


if __name__ == "__main__":
    main()
