"""Train a judge candidate with ``lrgan.judge.fit_judge``, as ``load_judge`` trains the judge
(the same digits, negatives, calibration and held-out report), with another width or step
count, and print its held-out report plus, per kind of held-out negative, the share accepted
as a digit. ``--cached`` measures the judge in the cache instead.

    uv run python packages/lrgan/bench/judge_candidate.py --width 32 --steps 10000 \
        --save judge_w32.pt                                                        # ~40 min
    uv run python packages/lrgan/bench/judge_candidate.py --cached                   # judge v6
"""

from __future__ import annotations

import json
import time

import click
import torch

from ganlab_common.data import MNIST
from lrgan.judge import (
    JUDGE_VERSION,
    NOT_A_DIGIT,
    Judge,
    fit_judge,
    load_judge,
    make_negatives,
    save_judge,
)

KINDS = ["noise", "patch", "two digits", "half digit", "blob", "digit on box", "speckled digit"]


def accepted_by_kind(judge: Judge, digits: torch.Tensor, seed: int = 201) -> dict[str, float]:
    """Share of each kind of held-out negative (drawn from ``digits``) judged a digit."""
    drawn = make_negatives(digits, 7 * 300, seed)  # make_negatives cycles through the kinds
    judged = judge.judge(drawn)
    return {kind: (judged[k::len(KINDS)] != NOT_A_DIGIT).float().mean().item()
            for k, kind in enumerate(KINDS)}


@click.command()
@click.option("--width", type=int, default=16, show_default=True)
@click.option("--steps", type=int, default=4000, show_default=True)
@click.option("--copies", type=int, default=2, show_default=True)
@click.option("--cached", is_flag=True, help="Measure the cached judge instead of training one.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--save", type=click.Path(dir_okay=False),
              help="Write the trained candidate here (for fidelity.py --judge_file).")
def main(width: int, steps: int, copies: int, cached: bool, threads: int, save: str | None
         ) -> None:
    torch.set_num_threads(threads)
    start = time.time()
    test = MNIST(split="test")
    if cached:
        judge = load_judge()
    else:
        judge = fit_judge(0, steps=steps, copies=copies, width=width)
        if save:
            save_judge(judge, save)
    what = {"cached_judge_version": JUDGE_VERSION} if cached else {
        "width": width, "steps": steps, "copies": copies}
    print(json.dumps({**what,
                      "seconds": round(time.time() - start), **judge.report,
                      "heldout_negatives_accepted_by_kind": accepted_by_kind(judge, test.data)}))


if __name__ == "__main__":
    main()
