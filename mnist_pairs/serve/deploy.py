"""A trained run outside training: ONNX graphs, and one scorer for `compare`.

    export_onnx(run, "out/")        # encoder.onnx + head.onnx (+ pair.onnx), meta.json
    scorer = open_scorer(run=run)   # or open_scorer(onnx="out/"): the same interface

The encoder and the comparison head are separate graphs, the usual Siamese deployment: embed
a gallery once, then run only the small head per pair. Both take dynamic batch sizes. Inputs
are images in [0, 1] (as `images.load_digit` gives them); the MNIST normalisation is inside the
encoder graph. meta.json carries the decision threshold the run chose on its selection set.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..augment import normalize
from ..config import EMBEDDING_MODELS
from ..errors import ConfigError
from ..metrics import probability
from ..paths import PUBLISHED, Reports, atomic_write_text
from ..runs import Run, record_digests, verified_bytes

OPSET = 18


class _Graph(nn.Module):
    """One deployable function of the Siamese model, as a module torch.onnx can export."""

    def __init__(self, model: nn.Module, fn) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(self.model, *inputs)


def _encoder(m, images):
    return m.embed(normalize(images))


def _head(m, ea, eb):
    return m.compare_embeddings(ea, eb)


def _pair(m, a, b):
    # each side embedded on its own (the training forward concatenates them, which makes the
    # exporter fix b's batch size); the same numbers in eval mode
    return m.compare_embeddings(m.embed(normalize(a)), m.embed(normalize(b)))


def _siamese(run: Run) -> nn.Module:
    if run.cfg.model not in EMBEDDING_MODELS:
        raise ConfigError(f"{run.dir} holds a {run.cfg.model!r} model: export and compare need the Siamese model "
                          "(its encoder and head are what get deployed)")
    return run.model()


def _export(module: nn.Module, args: tuple, names: list[str], out: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(out), dynamo=True, external_data=False, opset_version=OPSET,
                          input_names=names[:-1], output_names=names[-1:],
                          dynamic_shapes=(tuple({0: batch} for _ in args),),  # one entry: forward(*inputs)
                          verbose=False)


def export_model(model: nn.Module, dim: int, meta: dict, out_dir: str | os.PathLike, pair: bool = False) -> Path:
    """encoder.onnx, head.onnx (and pair.onnx) of a model with `embed` and `compare_embeddings`
    (embeddings of size `dim`), and meta.json (`meta` plus the format); returns out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # distinct sample tensors of batch 3: the same tensor twice, or a batch of 1 or 2, lets the
    # exporter specialise (a - a folds to zero)
    img_a, img_b = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28)
    graphs = {"encoder.onnx": (_encoder, (img_a,), ["images", "embeddings"]),
              "head.onnx": (_head, (torch.randn(3, dim), torch.randn(3, dim)), ["ea", "eb", "logits"])}
    if pair:
        graphs["pair.onnx"] = (_pair, (img_a, img_b), ["a", "b", "logits"])
    for name, (fn, args, names) in graphs.items():
        _export(_Graph(model, fn), args, names, out / name)
    meta = meta | {"opset": OPSET, "torch": torch.__version__,
                   "input": "images (B,1,28,28) float32 in [0,1], white ink on black; normalised inside encoder.onnx"}
    record_digests(out, graphs)   # digests.json: OnnxScorer refuses a graph that does not match it
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=1))
    return out


def export_onnx(run: Run, out_dir: str | os.PathLike, pair: bool = False) -> Path:
    """Write the run's encoder.onnx, head.onnx (and pair.onnx) and meta.json to out_dir; returns out_dir."""
    model = _siamese(run)
    meta = {"run": str(run.dir), "model": run.cfg.model, "threshold": run.results["threshold"],
            "selection": run.results["selection"]}
    return export_model(model, model.head[0].in_features // 2, meta, out_dir, pair)


class _Scorer:
    def probability(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """P(same digit) of two MNIST-style images ((1,28,28) or (28,28), white ink on black, in [0, 1])."""
        images = torch.stack([x.reshape(1, 28, 28).float() for x in (a, b)])
        emb = self.embed(images)
        return float(probability(self.logits(emb[:1], emb[1:]))[0])


class TorchScorer(_Scorer):
    """Scores with the run's selected checkpoint in PyTorch (fp32, eval mode)."""

    def __init__(self, run: Run) -> None:
        self.model, self.threshold, self.source = _siamese(run), run.results["threshold"], str(run.dir)
        self.selection = run.results["selection"]

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> np.ndarray:
        return _encoder(self.model, images).numpy()

    @torch.no_grad()
    def logits(self, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
        return _head(self.model, torch.from_numpy(ea), torch.from_numpy(eb)).numpy()


class OnnxScorer(_Scorer):
    """Scores with the exported graphs in onnxruntime (CPU)."""

    def __init__(self, onnx_dir: str | os.PathLike) -> None:
        import onnxruntime as ort

        d = Path(onnx_dir)
        if not (d / "meta.json").is_file():
            raise ConfigError(f"{d} is not an ONNX export (no meta.json): run `python -m mnist_pairs export RUN --onnx {d}`")
        meta = json.loads((d / "meta.json").read_text())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.encoder, self.head = (ort.InferenceSession(verified_bytes(d / n), opts, providers=["CPUExecutionProvider"])
                                   for n in ("encoder.onnx", "head.onnx"))
        self.threshold, self.selection, self.source = meta["threshold"], meta["selection"], str(d)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        return self.encoder.run(None, {"images": images.numpy().astype(np.float32)})[0]

    def logits(self, ea: np.ndarray, eb: np.ndarray) -> np.ndarray:
        return self.head.run(None, {"ea": ea.astype(np.float32), "eb": eb.astype(np.float32)})[0]


# The published models, best first: the improved model, then the seed reproduction.
PUBLISHED_MODELS = (PUBLISHED["improved"], PUBLISHED["siamese"])


def default_run(reports: Reports = Reports()) -> Run:
    """The best published model under reports/ (PUBLISHED_MODELS order), else the latest finished run."""
    for name in PUBLISHED_MODELS:
        if (reports.run(name) / "results.json").is_file():
            return Run.open(reports.run(name))
    return Run.latest()


def open_scorer(run: str | os.PathLike | None = None, onnx: str | os.PathLike | None = None,
                ensemble: str | os.PathLike | None = None):
    """An ONNX scorer when `onnx` is given; an ensemble's when `ensemble` is ("" for the published
    one, reports/runs/ensemble); else the run's (default: default_run())."""
    given = [name for name, v in (("--run", run), ("--onnx", onnx), ("--ensemble", ensemble)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give one model: {' and '.join(given)} do not go together")
    if onnx:
        return OnnxScorer(onnx)
    if ensemble is not None:
        from .ensemble import EnsembleScorer

        return EnsembleScorer(ensemble or None)
    return TorchScorer(Run.open(run) if run else default_run())


def pair_logits(scorer, images: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Logits of pairs (a[i], b[i]) among `images` in [0, 1]: each image embedded once."""
    emb = np.concatenate([scorer.embed(images[i:i + 2048]) for i in range(0, len(images), 2048)])
    return scorer.logits(emb[a.numpy()], emb[b.numpy()])


def parity(source, onnx_dir: str | os.PathLike, pairs) -> dict:
    """onnxruntime against PyTorch on fixed pairs (a data.PairSet): largest logit difference, and
    whether every decision at the threshold is the same. `source`: a Run, or a scorer (an ensemble's)."""
    scorer = TorchScorer(source) if isinstance(source, Run) else source
    ref = pair_logits(scorer, pairs.images, pairs.a, pairs.b)
    got = pair_logits(OnnxScorer(onnx_dir), pairs.images, pairs.a, pairs.b)
    t = scorer.threshold
    out = {}
    if (Path(onnx_dir) / "pair.onnx").is_file():
        import onnxruntime as ort

        n = min(len(ref), 4096)
        a, b = (pairs.images[i[:n]].numpy() for i in (pairs.a, pairs.b))
        whole = ort.InferenceSession(verified_bytes(Path(onnx_dir) / "pair.onnx"), providers=["CPUExecutionProvider"])
        out["pair_graph_max_abs_logit_diff"] = float(np.abs(whole.run(None, {"a": a, "b": b})[0] - ref[:n]).max())
    return out | {"pairs": len(ref), "max_abs_logit_diff": float(np.abs(ref - got).max()),
            "decisions_identical": bool(((probability(ref) > t) == (probability(got) > t)).all()),
            "onnx_acc": float(((probability(got) > t) == pairs.y.numpy().astype(bool)).mean())}
