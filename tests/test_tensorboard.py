"""TensorBoard, opt-in: a tiny real run with `tensorboard: true` writes the promised tags."""
from __future__ import annotations

import pytest

from mnist_pairs import train as T
from mnist_pairs.config import Config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator  # noqa: E402


def _plugins(folder) -> dict[str, set[str]]:
    ea = EventAccumulator(str(folder))
    ea.Reload()
    return {p: set(ea.PluginTagToContent(p)) for p in ea.ActivePlugins()}


def test_event_files_hold_scalars_pr_curves_hparams_and_projector(tmp_path, subset):
    cfg = Config(out_dir=str(tmp_path), run_name="tb", tensorboard=True, epochs=2, train_pairs=512,
                 test_pairs=200, val_pairs=200, val_images=200, heldout_pairs=400, batch_size=64)
    run = T.fit(cfg, log=lambda m: None)
    tb = run.dir / "tensorboard"
    main = _plugins(tb)
    assert {f"{m}/{s}" for m in ("loss", "acc") for s in ("train", "val", "test")} | \
        {"auc/val", "auc/test", "lr", "seconds"} <= main["scalars"]
    assert main["pr_curves"] == {"pr/val", "pr/test", "pr/heldout"}
    ea = event_accumulator.EventAccumulator(str(tb))
    ea.Reload()
    assert [e.step for e in ea.Scalars("acc/val")] == [1, 2]
    assert [e.value for e in ea.Scalars("acc/val")] == pytest.approx([h["val_acc"] for h in run.records])

    hp = _plugins(tb / "hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= hp["hparams"]
    assert {"hparam/val_acc", "hparam/test_acc", "hparam/heldout_acc", "hparam/heldout_auc"} <= hp["scalars"]

    projector = (tb / "projector_config.pbtxt").read_text()
    assert "sprite" in projector and "single_image_dim: 28" in projector
    (emb_dir,) = [p for p in tb.glob("*/heldout")]
    labels = (emb_dir / "metadata.tsv").read_text().split()
    assert labels == [str(v) for v in subset.heldout_labels[:1000].tolist()]
    assert (emb_dir / "sprite.png").stat().st_size > 1000


def test_off_by_default(tmp_path):
    assert Config().tensorboard is False
