"""The config rejects bad input before any work starts, with a message that names the fix."""
from __future__ import annotations

import pytest

from mnist_pairs.config import Config, ConfigError, from_dict, load_config
from mnist_pairs.paramfile import parse_override
from mnist_pairs.paths import PARAMS_DIR


def test_defaults_are_the_seeds_settings():
    c = Config()
    assert (c.batch_size, c.epochs, c.lr, c.weight_decay) == (256, 25, 8e-4, 1e-4)
    assert (c.lr_factor, c.lr_patience, c.lr_min, c.precision, c.compile) == (0.5, 2, 1e-5, "auto", False)
    assert (c.subset_fraction, c.train_pairs, c.test_pairs) == (0.1, 12000, 4000)
    assert (c.seed, c.data_seed, c.protocol) == (42, 42, "validation")


def test_params_files():
    assert load_config(PARAMS_DIR / "seed_siamese.yaml") == Config()
    assert load_config(PARAMS_DIR / "seed_concat.yaml") == Config(model="concat")
    # the notebooks' quick default is the seed's configuration with 2 epochs: -p epochs 25 restores it
    assert load_config(PARAMS_DIR / "quick.yaml", epochs=25) == Config()
    assert load_config(PARAMS_DIR / "seed_siamese.yaml", protocol="test").protocol == "test"


@pytest.mark.parametrize("values, match", [
    ({"epcohs": 25}, "did you mean 'epochs'"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"epochs": "25"}, "epochs must be int"),
    ({"epochs": 2.5}, "epochs must be int"),
    ({"channels_last": "yes"}, "channels_last must be bool"),
    ({"subset_fraction": 1.5}, "subset_fraction must be in"),
    ({"subset_fraction": 0.001}, "subset_fraction must be in"),
    ({"model": "resnet"}, "model must be one of"),
    ({"protocol": "holdout"}, "protocol must be one of"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"train_pairs": 1001}, "train_pairs must be even"),
    ({"lr": True}, "lr must be float"),
    ({"lr": float("inf")}, "lr must be a finite number"),
    ({"lr": float("nan")}, "lr must be a finite number"),
    ({"seed": -1}, r"seed must be in \[0, 2\*\*32\)"),
    ({"seed": 2 ** 32}, r"seed must be in \[0, 2\*\*32\)"),
    ({"data_seed": -5}, "data_seed must be in"),
    ({"run_name": "a/b"}, "run_name"),
])
def test_bad_values_are_rejected(values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(values)


@pytest.mark.parametrize("text, match", [
    ("epochs: [1\n", "line 2"),                         # unclosed flow sequence
    ("epochs: 3\n\tlr: 1\n", "line 2.*tabs"),
    ("epochs: 3\nepochs: 4\n", "line 2.*duplicate key 'epochs' \\(first on line 1\\)"),
    ("- 1\n", "mapping"),
    ("lr: .inf\n", "finite"),
    ("seed: -1\n", "seed must be in"),
])
def test_yaml_problems_name_the_file_and_line(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_nul_bytes_and_missing_file(tmp_path):
    p = tmp_path / "nul.yaml"
    p.write_bytes(b"epochs: 3\nlr: \x00\n")
    with pytest.raises(ConfigError, match="line 2: NUL byte"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_numbers_and_overrides(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("lr: 8e-4\nepochs: 3\n")  # PyYAML reads 8e-4 as a string; it is a float here
    c = load_config(p, seed=7)
    assert c.lr == 8e-4 and c.epochs == 3 and c.seed == 7
    assert parse_override("lr=1") == ("lr", 1) and from_dict({"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("epochs")


def test_round_trip_through_yaml(tmp_path):
    c = Config(model="concat", epochs=3, lr=1e-3, precision="fp32")
    (tmp_path / "c.yaml").write_text(c.to_yaml())
    assert load_config(tmp_path / "c.yaml") == c


def test_train_classes_needs_the_siamese_model_and_heldout_pairs():
    with pytest.raises(ConfigError, match="train_classes needs a Siamese model .* and heldout_pairs > 0"):
        Config(train_classes="0-7", model="concat")
    with pytest.raises(ConfigError, match="train_classes needs a Siamese model .* and heldout_pairs > 0"):
        Config(train_classes="0-7", heldout_pairs=0)
    assert Config(train_classes="0-7").seen_classes == tuple(range(8))
