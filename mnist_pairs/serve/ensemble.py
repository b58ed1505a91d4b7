"""Several trained Siamese runs scored as one model: the mean of their logits.

    publish_ensemble([run_a, run_b, …], "reports/runs/ensemble")   # members' files + ensemble.json
    scorer = EnsembleScorer("reports/runs/ensemble")                # compare --ensemble
    export_ensemble("reports/runs/ensemble", "out/onnx")            # one encoder graph, one head graph

Each member embeds the images with its own encoder; the ensemble's embedding is the members'
embeddings side by side, and its logit is the mean of the members' head logits on their own parts.
The decision threshold is chosen on the members' shared selection pairs (validation) with the
averaged logits, by the rule every run uses (metrics.choose_threshold): never on held-out pairs.
Every member's weights are checked against its digests.json when loaded.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, RunNotFound
from ..metrics import choose_threshold, set_metrics
from ..paths import PUBLISHED_ENSEMBLE, Reports, atomic_write_bytes, atomic_write_text, resolve, utc_now
from ..runs import RUN_WEIGHTS, Run, record_digests, verified_bytes
from .deploy import _Scorer, _siamese, export_model

MANIFEST = "ensemble.json"
MEMBER_FILES = ("config.yaml", "history.json", "env.json", "results.json", "scores.npz", "best.pt")
# the settings that fix a run's selection pairs: members must agree on all of them
SAME_PAIRS = ("protocol", "data_seed", "subset_fraction", "val_images", "val_pairs", "dataset", "train_classes")
# the optional pair sets (held-out, confirmation): one is scored for the ensemble (ensemble.json "sets") when all
# members have the same number of its pairs. The validation and test pairs are scored when every member's
# scores hold all of the data's pairs.
SCORED_SETS = ("heldout_pairs", "confirm_pairs")


def default_dir(reports: Reports = Reports()) -> Path:
    return reports.run(PUBLISHED_ENSEMBLE)


class Members(nn.Module):
    """The members as one model with a Siamese model's two functions (what export_model exports)."""

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.dims = [m.head[0].in_features // 2 for m in models]
        self.embedding_dim = sum(self.dims)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed(x) for m in self.members], dim=1)

    def compare_embeddings(self, ea: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
        parts = zip(self.members, ea.split(self.dims, dim=1), eb.split(self.dims, dim=1))
        return torch.stack([m.compare_embeddings(a, b) for m, a, b in parts]).mean(dim=0)


def _check_members(runs: list[Run]) -> None:
    if len(runs) < 2:
        raise ConfigError(f"an ensemble needs at least two runs, got {len(runs)}")
    for run in runs:
        if not run.finished:
            raise RunNotFound(f"{run.dir} has not finished (no results.json): an ensemble member must be a finished run")
        _siamese(run)   # refuses a concat run
    first = runs[0]
    for run in runs[1:]:
        differ = [k for k in SAME_PAIRS if getattr(run.cfg, k) != getattr(first.cfg, k)]
        if differ:
            raise ConfigError(f"{run.dir} and {first.dir} were selected on different pairs ({', '.join(differ)} differ): "
                              "an ensemble's threshold needs members scored on the same selection pairs")
    names = [r.dir.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two members share a folder name ({names}): give runs with distinct folder names")


def publish_ensemble(runs: list[Run | str | os.PathLike], out_dir: str | os.PathLike | None = None, log=print) -> Path:
    """Copy each member's files to <out_dir>/<run folder name>/ (weights verified), choose the
    threshold on the averaged logits of the shared selection pairs, write ensemble.json."""
    from ..data import load_data

    runs = [r if isinstance(r, Run) else Run.open(r) for r in runs]
    _check_members(runs)
    out = resolve(out_dir) if out_dir else default_dir()
    sel = runs[0].results["selection"]
    scores = [r.scores() for r in runs]
    # the selection pairs, and every other pair set that all members were scored on with the same pairs
    shared = [k for k in SCORED_SETS if len({getattr(r.cfg, k) for r in runs}) == 1]
    data = load_data(replace(runs[0].cfg, **{k: 0 for k in SCORED_SETS if k not in shared}), log=lambda m: None)
    mean = {name: np.mean([s[f"best_{name}"] for s in scores], axis=0) for name in data.sets
            if all(f"best_{name}" in s and len(s[f"best_{name}"]) == len(data.sets[name].y) for s in scores)}
    if sel not in mean:
        raise ConfigError(f"the members' {sel} scores do not match the {len(data.sets[sel].y)} {sel} pairs of their data")
    threshold = choose_threshold(mean[sel], data.sets[sel].y.numpy())
    sets = {name: set_metrics(z, data.sets[name], threshold, name) for name, z in mean.items()}
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ConfigError(f"{out} exists and is not an ensemble folder (no {MANIFEST}): give an empty or new folder")
    stage = out.with_name(f".{out.name}.partial")      # built aside, then put in place whole
    shutil.rmtree(stage, ignore_errors=True)
    for run in runs:
        for f in MEMBER_FILES:
            atomic_write_bytes(stage / run.dir.name / f, verified_bytes(run.dir / f))
        record_digests(stage / run.dir.name, RUN_WEIGHTS)
    m = sets[sel]
    manifest = {"members": [r.dir.name for r in runs], "sources": [str(r.dir) for r in runs],
                "seeds": [r.cfg.seed for r in runs], "combine": "mean of the members' logits", "selection": sel,
                "threshold": threshold, f"{sel}_acc": m["acc"], f"{sel}_auc": m["auc"],
                "sets": sets, "written": utc_now(),
                "command": "python -m mnist_pairs publish-ensemble " + " ".join(str(r.dir) for r in runs)}
    atomic_write_text(stage / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(stage, out)
    log(f"ensemble of {len(runs)} runs -> {out} (threshold {threshold:.3f} chosen on the {sel} pairs, "
        f"{sel} accuracy {m['acc']:.4f})")
    return out


def _manifest(folder: str | os.PathLike | None) -> tuple[Path, dict]:
    d = resolve(folder) if folder else default_dir()
    f = d / MANIFEST
    if not f.is_file():
        raise RunNotFound(f"no ensemble at {d} (no {MANIFEST}): the `best` recipe's confirmation runs "
                          "(docs/plans/best_and_fast.md) are published there once they exist; "
                          "`python -m mnist_pairs publish-ensemble RUN RUN … --out DIR` makes one from finished runs")
    return d, json.loads(f.read_text())


def members_model(folder: str | os.PathLike | None = None) -> tuple[Members, dict, Path]:
    d, manifest = _manifest(folder)
    runs = [Run.open(d / name) for name in manifest["members"]]
    return Members([_siamese(r) for r in runs]).eval(), manifest, d


class EnsembleScorer(_Scorer):
    """Scores with every member in PyTorch (fp32, eval mode): embeddings side by side, logits averaged."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.model, manifest, d = members_model(folder)
        self.model_dir, self.members = d, manifest["members"]
        self.threshold, self.selection = manifest["threshold"], manifest["selection"]
        self.source = f"{d} (ensemble of {len(manifest['members'])})"

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        from ..augment import normalize

        return self.model.embed(normalize(images)).numpy()

    @torch.no_grad()
    def logits(self, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
        return self.model.compare_embeddings(torch.from_numpy(ea), torch.from_numpy(eb)).numpy()


def export_ensemble(folder: str | os.PathLike | None, out_dir: str | os.PathLike, pair: bool = False) -> Path:
    """encoder.onnx (every member's embedding side by side), head.onnx (the mean logit) and meta.json:
    OnnxScorer and `compare --onnx` read them as they read one run's export."""
    model, manifest, d = members_model(folder)
    meta = {"run": str(d), "model": f"ensemble of {len(manifest['members'])}: " + ", ".join(manifest["members"]),
            "threshold": manifest["threshold"], "selection": manifest["selection"]}
    return export_model(model, model.embedding_dim, meta, out_dir, pair)
