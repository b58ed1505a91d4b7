"""Shared fixtures: real MNIST in the project's data root (fetched once, verified)."""
from __future__ import annotations

import warnings

import pytest

from mnist_pairs.config import Config
from mnist_pairs.data import load_subset
from mnist_pairs.mnist import ensure_mnist
from mnist_pairs.paths import data_root


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
