"""TensorBoard events of a run, opt-in (`tensorboard: true`), under <run>/tensorboard/.

    tb = TensorBoardLog(run_dir)                 # fit() opens it when cfg.tensorboard
    tb.epoch(record)                             # per epoch: loss/acc/auc of each pair set, lr, seconds
    tb.finish(run, data)                         # the selected checkpoint: PR curves, hparams, projector
    make tensorboard                             # serves experiments/ on 127.0.0.1:6006

Tags: scalars `loss/<set>`, `acc/<set>`, `auc/<set>` (set: train, val, test), `lr`,
`seconds`; PR curves `pr/<set>` of the selected model (val, test, heldout) at its epoch;
hparams (the config's scalar keys, metrics `hparam/<set>_acc` and `hparam/heldout_auc`) in
the `hparams` sub-run; the embedding projector of the held-out images (`heldout`, with sprite
images and their labels) for Siamese runs. The run's JSON files stay the source of truth:
everything written here comes from them or from best.pt.
"""
from __future__ import annotations

import weakref
from pathlib import Path

import torch

from . import augment
from .metrics import probability
from .models import embed_images

PROJECTOR_IMAGES = 1000  # the first held-out images (the sprite stays small)


class TensorBoardLog:
    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))
        weakref.finalize(self, self.writer.close)  # a run that dies still closes its event file

    def epoch(self, record: dict) -> None:
        step = record["epoch"]
        for key, value in record.items():
            name, _, metric = key.rpartition("_")
            if key == "epoch":
                continue
            self.writer.add_scalar(f"{metric}/{name}" if name else key, value, step)
        self.writer.flush()

    def finish(self, run, data) -> None:
        """PR curves, hparams and the projector, for the run's selected checkpoint."""
        res, scores, step = run.results, run.scores(), run.results["selected_epoch"]
        for name, pairs in data.sets.items():
            self.writer.add_pr_curve(f"pr/{name}", pairs.y.long(), torch.from_numpy(probability(scores[f"best_{name}"])),
                                     global_step=step)
        hparams = {k: v for k, v in run.cfg.to_dict().items() if isinstance(v, (int, float, str, bool))}
        metrics = {f"hparam/{name}_acc": res[f"best_{name}"]["acc"] for name in data.sets}
        if "best_heldout" in res:
            metrics["hparam/heldout_auc"] = res["best_heldout"]["auc"]
        self.writer.add_hparams(hparams, metrics, run_name="hparams", global_step=step)
        model = run.model()
        if hasattr(model, "embed"):
            images = data.subset.heldout_images[:PROJECTOR_IMAGES]
            emb = embed_images(model, augment.normalize(images))
            self.writer.add_embedding(emb, metadata=data.subset.heldout_labels[:PROJECTOR_IMAGES].tolist(),
                                      label_img=images, global_step=step, tag="heldout")
        self.writer.close()
