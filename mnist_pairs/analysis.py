"""A finished run, analysed from its saved scores (no pair is scored again; only the embedding
figures run the selected model's encoder, over held-out images).

    a = analyze(run)               # run: Run or folder
    a.metrics("test")              # loss/acc/auc of the selected model on the test pairs
    a.figures()                    # {name: Figure}: curves, confusion, ROC/PR, threshold, scores, errors,
                                   # embeddings (PCA, t-SNE) and retrieval (models with an encoder)
    a.figure("embeddings")         # one figure, or a one-line note when it does not apply to the model
    publish(a, "seed_siamese")     # reports/runs/seed_siamese/ + reports/figures/seed_siamese/
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from . import plots
from .config import EMBEDDING_MODELS
from .data import RunData, load_data
from .errors import ConfigError
from .metrics import confusion, curves, hardest_errors, pair_metrics
from .paths import Reports, atomic_write_bytes, resolve
from .runs import RUN_WEIGHTS, Run, record_digests, verified_bytes
from .seed_reference import SEED_HISTORY

PUBLISHED_FILES = ("config.yaml", "history.json", "env.json", "results.json", "scores.npz", "best.pt")
ENCODER_FIGURES = ("embeddings", "retrieval")  # drawn from the encoder's per-image embeddings


@dataclass(frozen=True)
class Note:
    """A one-line remark shown where a figure does not apply (Markdown in a notebook)."""
    text: str

    def _repr_markdown_(self) -> str:
        return f"*{self.text}*"

    def __repr__(self) -> str:
        return self.text


@dataclass
class Analysis:
    run: Run
    data: RunData
    logits: dict[str, np.ndarray]        # scores.npz: "best_test", "final_heldout", …
    n_embed: int = 2000                  # held-out images behind the embedding and retrieval figures
    _figures: dict | None = field(default=None, repr=False)

    @cached_property
    def results(self) -> dict:
        return self.run.results

    @cached_property
    def model(self) -> torch.nn.Module:
        """The selected checkpoint, loaded once (only the embedding figures need it)."""
        return self.run.model()

    def target(self, name: str) -> torch.Tensor:
        return self.data.sets[name].y

    def metrics(self, name: str = "test", which: str = "best") -> dict:
        return pair_metrics(torch.from_numpy(self.logits[f"{which}_{name}"]), self.target(name))

    def curves(self, name: str = "test") -> dict:
        return curves(torch.from_numpy(self.logits[f"best_{name}"]), self.target(name))

    def confusion(self, name: str = "test") -> np.ndarray:
        return confusion(torch.from_numpy(self.logits[f"best_{name}"]), self.target(name))

    def hardest(self, name: str = "test", k: int = 16) -> np.ndarray:
        return hardest_errors(torch.from_numpy(self.logits[f"best_{name}"]), self.target(name), k)

    def figures(self) -> dict:
        """Drawn once; the notebook shows them and publish writes the same objects."""
        if self._figures is None:
            self._figures = self._draw()
        return self._figures

    def figure(self, name: str):
        """The figure `name`, or a Note saying why this model has none (e.g. a concat model has
        no encoder, so no embeddings); an unknown name is a KeyError listing the known ones."""
        figs = self.figures()
        if name in figs:
            return figs[name]
        if name in ENCODER_FIGURES:
            return Note(f"本节不适用：{self.run.cfg.model} 模型没有单张图片的编码器（两张图一起输入），"
                        "因此没有嵌入，也没有近邻检索。")
        raise KeyError(f"no figure {name!r}; this analysis has {sorted(figs)}")

    def _draw(self) -> dict:
        test = self.data.sets["test"]
        images, prob = test.images.numpy(), torch.sigmoid(torch.from_numpy(self.logits["best_test"]))
        hard, c = self.hardest(), self.curves()
        history = self.run.records
        return {
            "curves": plots.plot_curves(history),
            "curves_vs_seed": plots.plot_curves_vs_seed(history, SEED_HISTORY),
            "confusion_matrix": plots.plot_confusion(self.confusion(), "混淆矩阵（所选检查点，测试对，阈值 0.5）"),
            "roc_pr": plots.plot_roc_pr(c),
            "threshold": plots.plot_threshold(c, self.results["threshold"], self.results["selection"]),
            "score_hist": plots.plot_score_hist(c),
            "hardest_errors": plots.plot_pairs(images, test.a[hard], test.b[hard], test.y[hard], test.labels,
                                               prob[hard], n=len(hard), title="最难的误判样本对（真实标签、数字与得分）"),
            "sample_pairs": plots.plot_pairs(images, test.a, test.b, test.y, test.labels, prob, n=10,
                                             title="测试样本对（标签与所选模型得分）"),
        } | (self._draw_embeddings() if self.run.cfg.model in EMBEDDING_MODELS else {})

    def embeddings(self, name: str = "heldout", n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, labels, images) of the first n images of a pair set (default n_embed), from
        the selected model's encoder (Siamese runs only): the one place the analysis runs the model."""
        n = self.n_embed if n is None else n
        from .augment import normalize
        from .models import embed_images

        s = self.data.sets[name]
        images = s.images[:n]
        return embed_images(self.model, normalize(images)).numpy(), s.labels[:n].numpy(), images.numpy()

    def _draw_embeddings(self) -> dict:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        emb, labels, images = self.embeddings()
        pca = PCA(n_components=2, random_state=0).fit_transform(emb)
        tsne = TSNE(n_components=2, init="pca", perplexity=30, random_state=0).fit_transform(emb)
        r = retrieval(self.model, emb, labels)
        return {"embeddings": plots.plot_embeddings(pca, tsne, labels, f"留出图片的编码器嵌入（前 {len(labels):,} 张）"),
                "retrieval": plots.plot_retrieval(images, labels, r["queries"], r["top"], r["scores"])}

    def retrieval(self) -> dict:
        """What the retrieval figure shows (retrieval()), from the same embeddings."""
        emb, labels, _ = self.embeddings()
        return retrieval(self.model, emb, labels)

    def save_figures(self, folder: str | Path) -> list[Path]:
        return [plots.save_figure(fig, Path(folder) / f"{name}.png") for name, fig in self.figures().items()]


RETRIEVAL_K = 5   # the retrieval figure's best matches per query (then one column: the best of another digit)


def retrieval(model, emb: np.ndarray, labels: np.ndarray, k: int = RETRIEVAL_K) -> dict:
    """The retrieval figure's data: the first image of each digit as the query, the other images as
    the gallery; per query its k best matches by the model's logit, then the best-scoring image of
    another digit (the margin between them shows what a probability of 1.000 hides). `queries`, `top`
    (Q, k+1) and `scores` index and score the gallery; `query_digits` and `match_digits` are their digits."""
    from .models import one_vs_many

    queries = np.array([np.flatnonzero(labels == d)[0] for d in range(10)])
    logits = one_vs_many(model, torch.from_numpy(emb[queries]), torch.from_numpy(emb)).numpy()
    logits[np.arange(10), queries] = -np.inf                      # a query never matches itself
    other = np.where(labels[None, :] == labels[queries][:, None], -np.inf, logits).argmax(axis=1)
    top = np.concatenate([np.argsort(-logits, axis=1)[:, :k], other[:, None]], axis=1)
    scores = np.take_along_axis(logits, top, axis=1)
    return {"k": k, "queries": queries, "top": top, "scores": scores,
            "query_digits": labels[queries].tolist(), "match_digits": labels[top].tolist()}


def retrieval_json(r: dict) -> dict:
    """retrieval()'s result as plain JSON (figures/<name>/retrieval.json beside the figure)."""
    return {"k": r["k"], "queries": r["queries"].tolist(), "top": r["top"].tolist(),
            "scores": np.round(r["scores"], 4).tolist(), "query_digits": r["query_digits"],
            "match_digits": r["match_digits"]}


def analyze(run: Run | str | os.PathLike, n_embed: int = 2000, log=print) -> Analysis:
    """The run's saved scores and pair sets; n_embed held-out images go into the embedding figures."""
    if n_embed < 10:
        raise ConfigError(f"n_embed must be at least 10 (one query per digit), got {n_embed}")
    run = run if isinstance(run, Run) else Run.open(run)
    return Analysis(run, load_data(run.cfg, log), run.scores(), n_embed)


def publish(analysis: Analysis, name: str, reports_dir: str | os.PathLike | None = None) -> Path:
    """Copy the run's files to <reports_dir>/runs/<name>/ and its figures to
    <reports_dir>/figures/<name>/, every file atomically (reports_dir: "" or None -> reports/)."""
    reports = Reports(resolve(reports_dir)) if reports_dir else Reports()
    dest = reports.run(name)
    for f in PUBLISHED_FILES:
        atomic_write_bytes(dest / f, verified_bytes(analysis.run.dir / f))
    record_digests(dest, RUN_WEIGHTS)
    analysis.save_figures(reports.figures(name))
    if "retrieval" in analysis.figures():   # the figure's data, for the report's caption
        write_retrieval(analysis, reports.figures(name))
    return dest


def write_retrieval(analysis: Analysis, folder: str | Path) -> Path:
    """<folder>/retrieval.json: what the run's retrieval figure shows (retrieval_json)."""
    import json

    return atomic_write_bytes(Path(folder) / "retrieval.json",
                              (json.dumps(retrieval_json(analysis.retrieval()), indent=1) + "\n").encode())
