"""The gradual pruning schedule and its flag: pure functions, no TensorFlow."""

from __future__ import annotations

import argparse
import itertools
import re

import numpy as np
import pytest

from modeldeploy.cli.optimize import add_arguments
from modeldeploy.contract.formats import PruningSchedule
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.options import options_from_args
from modeldeploy.optimize.prune import Ramp, block_mask, polynomial_decay_sparsity


def sparsity_at(step: int, begin: int = 0, end: int = 100, initial: float = 0.0, final: float = 0.8) -> float:
    return polynomial_decay_sparsity(step, initial=initial, final=final, begin_step=begin, end_step=end)


def test_polynomial_decay_follows_tf_mot_formula() -> None:
    assert sparsity_at(0) == 0.0
    assert sparsity_at(100) == pytest.approx(0.8)
    # final + (initial - final) * (1 - progress) ** 3
    assert sparsity_at(50) == pytest.approx(0.8 - 0.8 * 0.5**3)
    assert sparsity_at(25, initial=0.2) == pytest.approx(0.8 + (0.2 - 0.8) * 0.75**3)
    assert sparsity_at(60, begin=20, end=60) == pytest.approx(0.8)


def test_polynomial_decay_is_clamped_and_monotone() -> None:
    assert sparsity_at(-5, begin=10) == 0.0 and sparsity_at(500) == pytest.approx(0.8)
    values = [sparsity_at(step) for step in range(0, 101)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    # cubic: most of the pruning happens early, while the learning rate is high
    assert sparsity_at(33) > 0.8 * 0.69  # a third of the ramp: 1 - (2/3) ** 3 = 70 % of the target
    assert polynomial_decay_sparsity(3, initial=0.0, final=0.5, begin_step=5, end_step=5) == 0.0
    assert polynomial_decay_sparsity(5, initial=0.0, final=0.5, begin_step=5, end_step=5) == 0.5


def test_ramp_ends_before_fine_tuning_does_and_updates_at_its_end() -> None:
    ramp = Ramp.over(225)  # 5 epochs of 45 batches
    assert ramp.end_step == 150 and ramp.frequency == 9
    updates = [step for step in range(1, 226) if ramp.updates_at(step)]
    assert updates[-1] == 150 and len(updates) == 17  # every 9th step, and the end of the ramp
    assert ramp.sparsity(150, 0.8) == pytest.approx(0.8)
    tiny = Ramp.over(1)
    assert tiny.end_step == 1 and tiny.updates_at(1)


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--source", "/m.keras", "--output", "/out", "--version", "1", *flags])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), PruningSchedule.ONE_SHOT),
        (("--fine-tune-epochs", "3", "--train-data", "/t.npz"), PruningSchedule.POLYNOMIAL_DECAY),
        (
            ("--fine-tune-epochs", "3", "--train-data", "/t.npz", "--pruning-schedule", "oneshot"),
            PruningSchedule.ONE_SHOT,
        ),
        (("--pruning-schedule", "OneShot"), PruningSchedule.ONE_SHOT),
    ],
)
def test_schedule_defaults_to_gradual_when_fine_tuning(flags: tuple[str, ...], expected: PruningSchedule) -> None:
    assert options_from_args(parse(*flags)).pruning_schedule is expected


def test_bad_schedules_name_the_flag() -> None:
    with pytest.raises(OptimizeError, match=re.escape("--pruning-schedule: must be one of PolynomialDecay|OneShot")):
        options_from_args(parse("--pruning-schedule", "linear"))
    with pytest.raises(OptimizeError, match=r"--pruning-schedule: PolynomialDecay ramps .* --fine-tune-epochs"):
        options_from_args(parse("--pruning-schedule", "PolynomialDecay"))


def test_dense_block_size_accepts_the_sizes_tflite_executes() -> None:
    assert options_from_args(parse("--dense-block-size", "16")).dense_block_size == 16
    assert options_from_args(parse()).dense_block_size == 1
    with pytest.raises(OptimizeError, match=re.escape("--dense-block-size: must be one of 1|4|16, got 8")):
        options_from_args(parse("--dense-block-size", "8"))


def test_keep_classifier_dense_flag() -> None:
    assert options_from_args(parse("--keep-classifier-dense")).keep_classifier_dense
    assert not options_from_args(parse()).keep_classifier_dense


def test_block_mask_prunes_whole_blocks_of_consecutive_inputs() -> None:
    weights = np.random.default_rng(0).normal(size=(64, 8))
    mask = block_mask(weights, 0.75, 16)
    blocks = mask.reshape(4, 16, 8)
    assert np.all(blocks.min(axis=1) == blocks.max(axis=1))  # each block all kept or all pruned
    assert float(np.mean(mask == 0)) == 0.75
    scores = np.abs(weights).reshape(4, 16, 8).sum(axis=1)
    kept = blocks[:, 0, :] == 1
    assert scores[kept].min() >= scores[~kept].max()  # the blocks with the largest sum |w| stay
    # not 2-D, or inputs not a multiple of the block: weight by weight
    assert float(np.mean(block_mask(np.arange(1.0, 31.0).reshape(30, 1), 0.5, 16) == 0)) == 0.5
