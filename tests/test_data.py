"""MNIST verification and rebuilding, the fixed subset, pairs, pair sets and augmentation, on real MNIST."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mnist_pairs import augment as A
from mnist_pairs import data as D
from mnist_pairs import mnist as M
from mnist_pairs import subset as S
from mnist_pairs.config import Config


def _scratch_root(tmp_path, mnist_root):
    """A copy of the verified raw files (and the cached wheel) in a scratch data root."""
    root = tmp_path / "data"
    shutil.copytree(mnist_root / "MNIST" / "raw", root / "MNIST" / "raw")
    if (mnist_root / "cache").is_dir():
        shutil.copytree(mnist_root / "cache", root / "cache")
    return root


def test_official_checksums(mnist_root):
    assert M.verify_mnist(mnist_root) == {name: "ok" for name in M.MNIST_FILES}
    x, y = M.load_mnist(mnist_root, train=True)
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    _, yt = M.load_mnist(mnist_root, train=False)
    assert torch.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_load_mnist_reads_what_torchvision_reads(tmp_path, mnist_root):
    """load_mnist parses the IDX files itself (no torchvision import): the same tensors, dtypes
    and shapes as torchvision's MNIST reader, for both splits; a file that is not IDX bytes is refused."""
    from torchvision import datasets

    for train in (True, False):
        x, y = M.load_mnist(mnist_root, train=train, verify=False)
        ds = datasets.MNIST(str(mnist_root), train=train, download=False)
        assert x.dtype == ds.data.dtype and y.dtype == ds.targets.dtype
        assert torch.equal(x, ds.data) and torch.equal(y, ds.targets)
    blob = (mnist_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    for bad, match in ((blob[:2] + b"\x0d" + blob[3:], "not an IDX file"), (blob[:-1], "dims")):
        (tmp_path / "f").write_bytes(bad)
        with pytest.raises(M.MNISTUnavailable, match=match):
            M.read_idx(tmp_path / "f")


def test_damaged_files_are_detected_and_rebuilt(tmp_path, mnist_root):
    """Each kind of damage is detected by its own status; one rebuild then restores every file
    (the rebuild is one code path whatever the damage: the wheel's CSVs, ~6 s a time)."""
    root = _scratch_root(tmp_path, mnist_root)
    raw = root / "MNIST" / "raw"
    victims = {"t10k-labels-idx1-ubyte": "truncate", "train-labels-idx1-ubyte": "flip_byte",
               "t10k-images-idx3-ubyte": "delete"}
    for name, damage in victims.items():
        blob = (raw / name).read_bytes()
        if damage == "truncate":
            (raw / name).write_bytes(blob[:-100])
        elif damage == "flip_byte":
            (raw / name).write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
        else:
            (raw / name).unlink()
    status = M.verify_mnist(root)
    assert status["t10k-labels-idx1-ubyte"].startswith("wrong size")
    assert status["train-labels-idx1-ubyte"].startswith("md5 mismatch")
    assert status["t10k-images-idx3-ubyte"] == "missing" and status["train-images-idx3-ubyte"] == "ok"
    messages = []
    M.ensure_mnist(root, log=messages.append)  # torchvision's mirrors fail here; the wheel rebuilds
    assert M.verify_mnist(root) == {name: "ok" for name in M.MNIST_FILES}
    assert any("verified from source" in m for m in messages)
    assert not list(raw.glob(".*tmp*")), "temporary files left behind"


def test_every_source_failing_names_each(tmp_path):
    def broken(reason):
        def source(root, dataset):
            raise OSError(reason)
        return source

    sources = (("first", broken("no network")), ("second", broken("bad checksum")))
    with pytest.raises(M.MNISTUnavailable) as err:
        M.ensure_mnist(tmp_path / "empty", sources=sources, log=lambda m: None)
    text = str(err.value)
    assert "first" in text and "no network" in text and "second" in text and "bad checksum" in text
    assert not (tmp_path / "empty" / "MNIST" / "raw").exists() or \
        not any((tmp_path / "empty" / "MNIST" / "raw").iterdir())


def test_csv_to_idx_layout():
    csv = b"label,1x1\n" + b"\n".join(b",".join([b"7"] + [str(i % 256).encode() for i in range(784)]) for _ in range(2))
    images, labels = M._csv_to_idx(csv + b"\n")
    assert images[:16] == (2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert len(images) == 16 + 2 * 784 and images[16:16 + 784] == bytes(i % 256 for i in range(784))
    assert labels == (2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([7, 7])


def test_subset_is_fixed_and_cached(tmp_path, mnist_root, subset):
    assert subset.train_images.shape == (6000, 1, 28, 28) and subset.test_images.shape == (1000, 1, 28, 28)
    assert subset.heldout_images.shape == (9000, 1, 28, 28)
    assert 0.0 <= float(subset.train_images.min()) and float(subset.train_images.max()) <= 1.0
    # the cache holds exactly what a fresh draw from the data seed gives, and is reused as is
    fresh = S._draw_subset(60000, 10000, 0.1, 42)
    np.testing.assert_array_equal(subset.train_index, fresh["train"])
    np.testing.assert_array_equal(subset.test_index, fresh["test"])
    assert len(np.unique(subset.train_index)) == 6000
    other = S._draw_subset(60000, 10000, 0.1, 43)
    assert not np.array_equal(other["train"], fresh["train"])


def test_training_seed_does_not_move_the_subset(subset):
    again = D.load_subset(Config(seed=7), log=lambda m: None)  # training seed 7, data seed 42
    np.testing.assert_array_equal(again.train_index, subset.train_index)


@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_damaged_subset_cache_is_drawn_again(tmp_path, damage):
    labels = {"train": torch.arange(600) % 10, "test": torch.arange(100) % 10}
    first = S.subset_indices(labels, 0.5, 7, tmp_path)
    path = tmp_path / "subsets" / "subset_seed7_frac0.5.json"
    if damage == "tamper":
        rec = json.loads(path.read_text())
        rec["train"][0] = (rec["train"][0] + 1) % 600
        path.write_text(json.dumps(rec))
    else:
        path.write_bytes(path.read_bytes()[:100])
    messages = []
    again = S.subset_indices(labels, 0.5, 7, tmp_path, log=messages.append)
    np.testing.assert_array_equal(again["train"], first["train"])
    assert messages and str(path) in messages[0]
    assert json.loads(path.read_text())["train"] == first["train"].tolist()  # rewritten whole


def test_a_fraction_too_small_for_every_digit_fails_before_caching(tmp_path):
    labels = {"train": torch.arange(600) % 10, "test": torch.arange(100) % 10}
    with pytest.raises(S.ConfigError, match="at least 2"):
        S.subset_indices(labels, 0.05, 7, tmp_path)   # 5 test images for 10 digits
    assert not (tmp_path / "subsets").exists()


def test_training_pairs_balanced_no_self_pairs_deterministic(subset):
    labels = subset.train_labels
    a, b, y = D.train_pairs(labels, 12000, seed=42, epoch=3)
    assert D.pair_balance(y) == {"pairs": 12000, "same": 6000, "different": 6000}
    assert torch.equal((labels[a] == labels[b]).float(), y)
    assert not (a == b).any()
    a2, b2, y2 = D.train_pairs(labels, 12000, seed=42, epoch=3)
    assert torch.equal(a, a2) and torch.equal(b, b2) and torch.equal(y, y2)
    a3, _, _ = D.train_pairs(labels, 12000, seed=42, epoch=4)
    assert not torch.equal(a, a3)
    # every image can be drawn: anchors cover nearly the whole subset over one epoch
    assert len(torch.unique(torch.cat([a, b]))) > 5000


def test_pair_sampler_on_tiny_classes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    a, b, y = D.sample_pairs(labels, 2000, torch.Generator().manual_seed(0))
    assert not (a == b).any() and torch.equal((labels[a] == labels[b]).float(), y)
    with pytest.raises(ValueError):
        D.sample_pairs(torch.tensor([0, 1, 1]), 4, torch.Generator().manual_seed(0))


def test_fixed_pairs_saved_and_reused(tmp_path, subset):
    path = tmp_path / "p.json"
    a, b, y = D.fixed_pairs(subset.test_labels, 4000, (42, 2), path)
    assert D.pair_balance(y) == {"pairs": 4000, "same": 2000, "different": 2000}
    assert not (a == b).any() and torch.equal((subset.test_labels[a] == subset.test_labels[b]).float(), y)
    a2, b2, y2 = D.fixed_pairs(subset.test_labels, 4000, (42, 2), path)
    assert torch.equal(a, a2) and torch.equal(b, b2) and torch.equal(y, y2)
    # drawn for other images: drawn again from the key, for these labels
    a3, b3, y3 = D.fixed_pairs(subset.test_labels.flip(0), 4000, (42, 2), path, log=lambda m: None)
    assert torch.equal((subset.test_labels.flip(0)[a3] == subset.test_labels.flip(0)[b3]).float(), y3)


def test_validation_protocol_holds_out_stratified_images_disjoint_from_training(subset):
    cfg = Config(protocol="validation")
    data = D.load_data(cfg, log=lambda m: None)
    keep, held = D.stratified_split(subset.train_labels, 1000, 42)
    assert len(held) == 1000 and len(keep) == 5000
    assert not set(keep.tolist()) & set(held.tolist())
    share = torch.bincount(subset.train_labels[held], minlength=10).double() / 1000
    whole = torch.bincount(subset.train_labels, minlength=10).double() / 6000
    assert float((share - whole).abs().max()) < 0.001 + 1 / 1000  # proportional up to rounding
    assert data.selection == "val" and set(data.sets) == {"val", "test", "heldout"}
    assert len(data.train_labels) == 5000 and torch.equal(data.train_images, subset.train_images[keep])
    val = data.sets["val"]
    assert torch.equal(val.images, subset.train_images[held]) and D.pair_balance(val.y)["same"] == 2000
    assert int(val.a.max()) < 1000 and int(val.b.max()) < 1000   # pairs only among the held-out images
    # the same split and pairs for every training seed
    other = D.load_data(Config(protocol="validation", seed=3), log=lambda m: None)
    assert torch.equal(other.sets["val"].a, val.a) and torch.equal(other.train_labels, data.train_labels)


def test_test_protocol_trains_on_every_subset_image(subset):
    data = D.load_data(Config(protocol="test", heldout_pairs=0), log=lambda m: None)
    assert data.selection == "test" and set(data.sets) == {"test"} and len(data.train_labels) == 6000


def test_heldout_pairs_use_only_test_images_outside_the_subset(subset):
    data = D.load_data(Config(protocol="test"), log=lambda m: None)
    h = data.sets["heldout"]
    assert len(h.y) == 40000 and D.pair_balance(h.y)["same"] == 20000 and not (h.a == h.b).any()
    outside = np.setdiff1d(np.arange(10000), subset.test_index)
    _, test_labels = M.load_mnist(train=False, verify=False)
    assert torch.equal(h.labels, test_labels[outside])


def test_augmentation_identity_and_determinism(subset):
    x = subset.train_images[:64]
    identity = A.AugParams(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(64, 2, 3).contiguous(),
                           torch.zeros(64, 1, 3, 3).index_put_((torch.arange(64), torch.zeros(64, dtype=torch.long),
                                                                torch.ones(64, dtype=torch.long),
                                                                torch.ones(64, dtype=torch.long)), torch.ones(64)))
    torch.testing.assert_close(A.augment(x, identity), x, atol=1e-5, rtol=0)
    cfg = Config()
    p1 = A.draw_aug(64, cfg, A.aug_generator(42, 1))
    p2 = A.draw_aug(64, cfg, A.aug_generator(42, 1))
    torch.testing.assert_close(A.augment(x, p1), A.augment(x, p2), atol=0, rtol=0)
    out = A.augment(x, p1)
    assert out.shape == x.shape and not torch.allclose(out, x)
    # a shift of 10 % keeps most of the ink: the digit is moved, not lost
    assert float(out.sum()) > 0.8 * float(x.sum())
    assert int((p1.kernel[:, 0, 1, 1] < 1).sum()) > 0  # some images are blurred


def test_nearest_interpolation_keeps_whole_pixel_values(subset):
    x = subset.train_images[:64]
    cfg = Config(aug_interpolation="nearest", aug_blur_prob=0.0)
    out = A.augment(x, A.draw_aug(64, cfg, A.aug_generator(42, 1)))
    assert set(torch.unique(out).tolist()) <= set(torch.unique(x).tolist())   # no new grey levels
    soft = A.augment(x, A.draw_aug(64, Config(aug_blur_prob=0.0), A.aug_generator(42, 1)))
    assert int((soft == 1.0).sum()) < int((out == 1.0).sum())                # bilinear softens saturated ink


def test_elastic_displacement_is_bounded_smooth_and_leaves_other_draws_alone(subset):
    x = subset.train_images[:64]
    plain, elastic = Config(), Config(aug_elastic_alpha=3.0, aug_elastic_sigma=4.0)
    p0 = A.draw_aug(64, plain, A.aug_generator(42, 1))
    p1 = A.draw_aug(64, elastic, A.aug_generator(42, 1))
    assert p0.flow is None
    # the affine and blur draws come first: switching elastic on changes nothing else
    torch.testing.assert_close(p1.theta, p0.theta, atol=0, rtol=0)
    torch.testing.assert_close(p1.kernel, p0.kernel, atol=0, rtol=0)
    pixels = p1.flow * 28 / 2                                        # grid units -> pixels
    assert p1.flow.shape == (64, 28, 28, 2)
    torch.testing.assert_close(pixels.abs().amax(dim=(1, 2, 3)), torch.full((64,), 3.0), atol=1e-4, rtol=0)
    # smooth: neighbouring pixels move almost together (white noise would differ by ~alpha)
    assert float((pixels[:, 1:] - pixels[:, :-1]).abs().mean()) < 0.3
    out, rigid = A.augment(x, p1), A.augment(x, p0)
    assert not torch.allclose(out, rigid) and float(out.sum()) > 0.8 * float(x.sum())
    # rows() keeps each image's own field, and the result is the same batch or one by one
    torch.testing.assert_close(A.augment(x[5:9], p1.rows(slice(5, 9))), out[5:9], atol=1e-6, rtol=0)
