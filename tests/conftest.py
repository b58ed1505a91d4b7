"""Shared fixtures: real MNIST in the project's data root (fetched once, verified)."""
from __future__ import annotations

import warnings

import pytest

from mnist_pairs.config import Config
from mnist_pairs.subset import load_subset
from mnist_pairs.mnist import ensure_mnist
from mnist_pairs.paths import data_root

QUIET = dict(log=lambda m: None)
# A tiny run of one epoch (1 thread: the CI runners have 2 cores and share them)
TINY = dict(epochs=1, train_pairs=512, test_pairs=200, val_pairs=200, val_images=100, heldout_pairs=0,
            batch_size=64, num_threads=1)


@pytest.fixture(scope="module", autouse=True)
def _keep_torch_threads():
    """Tiny runs set torch's intra-op threads to 1 for the process; give later modules theirs back."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def mnist_root():
    ensure_mnist()
    return data_root()


@pytest.fixture(scope="session")
def subset(mnist_root):
    return load_subset(Config(), log=lambda m: None)


@pytest.fixture
def no_glyph_warnings():
    """Fail on any 'Glyph … missing from font' warning raised inside the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing = [str(w.message) for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    assert not missing, f"missing glyphs: {missing[:5]}"
