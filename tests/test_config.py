"""The config rejects bad input before any work starts, with a message that names the fix."""
from __future__ import annotations

import pytest

from mnist_pairs.config import Config, ConfigError, from_dict, load_config, parse_override
from mnist_pairs.paths import PARAMS_DIR


def test_defaults_are_the_seeds_settings():
    c = Config()
    assert (c.batch_size, c.epochs, c.lr, c.weight_decay) == (256, 25, 8e-4, 1e-4)
    assert (c.lr_factor, c.lr_patience, c.lr_min, c.amp, c.compile) == (0.5, 2, 1e-5, True, False)
    assert (c.subset_fraction, c.train_pairs, c.test_pairs) == (0.1, 12000, 4000)


def test_seed_params_file_is_the_default_config():
    assert load_config(PARAMS_DIR / "seed_siamese.yaml") == Config()
    assert load_config(PARAMS_DIR / "seed_concat.yaml") == Config(model="concat")


@pytest.mark.parametrize("values, match", [
    ({"epcohs": 25}, "did you mean 'epochs'"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"epochs": "25"}, "epochs must be int"),
    ({"epochs": 2.5}, "epochs must be int"),
    ({"amp": "yes"}, "amp must be bool"),
    ({"subset_fraction": 1.5}, "subset_fraction must be in"),
    ({"model": "resnet"}, "model must be one of"),
    ({"train_pairs": 1001}, "train_pairs must be even"),
    ({"lr": True}, "lr must be float"),
    ({"run_name": "a/b"}, "run_name"),
])
def test_bad_values_are_rejected(values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(values)


def test_yaml_numbers_and_overrides(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("lr: 8e-4\nepochs: 3\n")  # PyYAML reads 8e-4 as a string; it is a float here
    c = load_config(p, seed=7)
    assert c.lr == 8e-4 and c.epochs == 3 and c.seed == 7
    assert parse_override("lr=1") == ("lr", 1) and from_dict({"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("epochs")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_round_trip_through_yaml(tmp_path):
    c = Config(model="concat", epochs=3, lr=1e-3)
    (tmp_path / "c.yaml").write_text(c.to_yaml())
    assert load_config(tmp_path / "c.yaml") == c
