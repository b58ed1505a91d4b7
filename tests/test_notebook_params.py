"""Notebook parameters: what papermill injects is validated before any work starts."""
from __future__ import annotations

import pytest

from mnist_pairs import notebook as nb
from mnist_pairs.config import Config, ConfigError


def _ns(**params):
    # what a kernel's globals hold after the parameters cell and papermill's injected cell
    return {"In": [], "Out": {}, "get_ipython": print, "nb": nb, "_": None, **params}


def test_quick_default_differs_from_the_study_only_in_epochs():
    quick = nb.config_from_parameters(_ns(params_file="params/seed_siamese.yaml", epochs=2, seed=None,
                                          model=None, run_name=""))
    assert quick == Config(epochs=2)
    full = nb.config_from_parameters(_ns(params_file="params/seed_siamese.yaml", epochs=25, seed=None,
                                         model=None, run_name=""))
    assert full == Config()


def test_params_file_injection_as_papermill_f_does():
    # `papermill 02_train.ipynb out.ipynb -f params/seed_concat.yaml` injects every key of the file
    cfg = nb.config_from_parameters(_ns(params_file="params/seed_siamese.yaml", epochs=2, seed=None, model="concat",
                                        run_name="", batch_size=256, lr=0.0008, weight_decay=0.0001,
                                        train_pairs=12000, test_pairs=4000, subset_fraction=0.1))
    assert cfg.model == "concat" and cfg.epochs == 2 and cfg.batch_size == 256


@pytest.mark.parametrize("params, match", [
    (dict(epcohs=25), "did you mean 'epochs'"),
    (dict(epochs="many"), "epochs must be int"),
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(model="resnet"), "model must be one of"),
])
def test_bad_parameters_fail_before_training(params, match):
    with pytest.raises(ConfigError, match=match):
        nb.config_from_parameters(_ns(params_file="params/seed_siamese.yaml", **params))


def test_analysis_notebook_parameters_are_checked():
    with pytest.raises(ConfigError, match="unknown notebook parameter"):
        nb.parameters(_ns(run_dir="", publish_as="", publsh_as="x"), allowed={"run_dir", "publish_as"})
