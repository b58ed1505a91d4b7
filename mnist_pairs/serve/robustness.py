"""How a published model holds up on pictures that are not MNIST's own.

    out = measure(["reports/runs/seed_siamese", "reports/runs/improved"])   # -> reports/robustness.json

Each held-out image (MNIST test split, outside the subset) is drawn as a user's picture would be:
enlarged 4x onto a 112x112 canvas, then perturbed as real input is (`PERTURBATIONS`), then read back
through the conversion `compare` and the drawing pad use (`images.to_mnist`: grayscale, inverted if
light, cropped to the ink, 20x20 box, centre of mass at the centre). The held-out pairs are scored
on the converted images with the run's selected checkpoint: pair accuracy at the run's threshold
(the decision `compare` prints) and ROC-AUC, beside the same conversion without perturbation
("clean") and MNIST's own 28x28 images without any conversion ("mnist"). Every random choice
(angle, scale, placement) is drawn from `seed`, the same for every model.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..metrics import pair_metrics
from ..paths import PROJECT_ROOT, Reports, atomic_write_text, resolve
from ..runs import Run, sha256
from .deploy import TorchScorer, pair_logits
from .images import to_mnist

CANVAS = 4   # a 28x28 digit drawn at 112x112, the size of a small drawing pad


def canvas(x: np.ndarray) -> np.ndarray:
    """A 28x28 digit in [0, 1] enlarged CANVAS times (bilinear): the picture a user would give."""
    return np.clip(ndimage.zoom(x.astype(np.float32), CANVAS, order=1), 0.0, 1.0)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((img * 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0


def _resample(img: np.ndarray, size: int) -> np.ndarray:
    """Down to size x size and back (bilinear both ways): a low-resolution picture."""
    small = ndimage.zoom(img, size / img.shape[0], order=1)
    return np.clip(ndimage.zoom(small, img.shape[0] / small.shape[0], order=1), 0.0, 1.0)


def _rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(15, 25) * rng.choice([-1, 1])
    return np.clip(ndimage.rotate(img, angle, reshape=True, order=1), 0.0, 1.0)


def _scaled(img: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(ndimage.zoom(img, factor, order=1), 0.0, 1.0)


def _off_centre(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit somewhere near a corner of a canvas three times as wide."""
    n = img.shape[0]
    big = np.zeros((3 * n, 3 * n), dtype=np.float32)
    top, left = (int(v) for v in rng.integers(0, n // 2, size=2) + rng.choice([0, 2 * n - n // 2], size=2))
    big[top:top + n, left:left + n] = img
    return big


def mouse_strokes(img: np.ndarray, pen: int = 9) -> np.ndarray:
    """The digit as a mouse would draw it: its morphological skeleton (Lantuéjoul: the union over k of
    erode^k(X) minus its opening) traced with a round pen of `pen` pixels, edges softened by one pixel."""
    ink = img > 0.5
    skeleton = np.zeros_like(ink)
    cross = ndimage.generate_binary_structure(2, 1)
    eroded = ink
    while eroded.any():
        skeleton |= eroded & ~ndimage.binary_opening(eroded, cross)
        eroded = ndimage.binary_erosion(eroded, cross)
    yy, xx = np.mgrid[-(pen // 2):pen // 2 + 1, -(pen // 2):pen // 2 + 1]
    stroke = ndimage.binary_dilation(skeleton, yy ** 2 + xx ** 2 <= (pen // 2) ** 2)
    return np.clip(ndimage.gaussian_filter(stroke.astype(np.float32), 1.0), 0.0, 1.0)


# name -> (what it imitates, perturbation of a canvas picture in [0, 1] with a random generator)
PERTURBATIONS = {
    "clean": ("同样的转换，不加扰动", lambda x, rng: x),
    "thick": ("粗笔画（灰度膨胀 7×7，约加粗 1.5 个 MNIST 像素）", lambda x, rng: ndimage.grey_dilation(x, size=(7, 7))),
    "thin": ("细笔画（灰度腐蚀 5×5）", lambda x, rng: ndimage.grey_erosion(x, size=(5, 5))),
    "rotate": ("旋转 15°–25°（方向随机）", _rotate),
    "scale_0.6": ("缩小到 0.6 倍", lambda x, rng: _scaled(x, 0.6)),
    "scale_1.4": ("放大到 1.4 倍", lambda x, rng: _scaled(x, 1.4)),
    "off_centre": ("放在三倍大画布的角落附近", _off_centre),
    "inverted": ("黑字白底", lambda x, rng: 1.0 - x),
    "low_res_12": ("低分辨率（缩到 12×12 再放大）", lambda x, rng: _resample(x, 12)),
    "jpeg_30": ("JPEG 压缩（质量 30）", lambda x, rng: _jpeg(x, 30)),
    "mouse": ("鼠标笔画（MNIST 骨架以 9 像素圆笔重画）", lambda x, rng: mouse_strokes(x)),
}


def converted(images: np.ndarray, name: str, seed: int) -> torch.Tensor:
    """(N, 1, 28, 28) MNIST digits drawn on a canvas, perturbed by PERTURBATIONS[name], converted back."""
    rng = np.random.default_rng([seed, list(PERTURBATIONS).index(name)])
    fn = PERTURBATIONS[name][1]
    out = np.stack([to_mnist(fn(canvas(x.reshape(28, 28)), rng), f"{name} #{i}") for i, x in enumerate(images)])
    return torch.from_numpy(out)[:, None]


def score(scorer, images: torch.Tensor, pairs) -> dict:
    """Pair accuracy at the scorer's threshold (the decision `compare` prints) and ROC-AUC."""
    z = torch.from_numpy(pair_logits(scorer, images, pairs.a, pairs.b))
    same = torch.sigmoid(z.float()) > scorer.threshold
    return {"acc": float((same.float() == pairs.y.float()).float().mean()), "auc": pair_metrics(z, pairs.y)["auc"]}


def measure(runs: list[str | Path], n_pairs: int | None = None, seed: int = 0, log=print) -> dict:
    """Every run's held-out pair accuracy and AUC, on MNIST's images, the clean conversion, and each
    perturbation (the first `n_pairs` held-out pairs, all by default)."""
    from ..data import load_data

    out = _setup(seed, n_pairs) | {"runs": {}}
    cache: dict[tuple, torch.Tensor] = {}
    for path in runs:
        run = Run.open(path)
        data = load_data(run.cfg, log=lambda m: None)
        pairs = data.sets["heldout"]
        if n_pairs:
            pairs = type(pairs)(pairs.images, pairs.labels, pairs.a[:n_pairs], pairs.b[:n_pairs], pairs.y[:n_pairs])
        used = torch.unique(torch.cat([pairs.a, pairs.b]))      # only the images the pairs use, re-indexed
        images = pairs.images[used].float()
        pairs = type(pairs)(images, pairs.labels[used], torch.searchsorted(used, pairs.a),
                            torch.searchsorted(used, pairs.b), pairs.y)
        scorer = TorchScorer(run)
        rows = {"mnist": score(scorer, images, pairs)}
        for name in PERTURBATIONS:
            t0 = time.perf_counter()
            key = (name, float(images.sum()), len(used))      # runs of one subset share the converted images
            if key not in cache:
                cache[key] = converted(images.numpy(), name, seed)
            rows[name] = score(scorer, cache[key], pairs)
            log(f"{Path(path).name:>14} {name:>11}: acc {rows[name]['acc']:.4f}  auc {rows[name]['auc']:.4f}  "
                f"({time.perf_counter() - t0:.0f} s)")
        clean = rows["clean"]["acc"]
        for name, r in rows.items():
            r["drop_pp"] = 100 * (clean - r["acc"])
        out["runs"][Path(path).name] = {"run": os.path.relpath(resolve(path), PROJECT_ROOT), "model": run.cfg.model, "started": run.env.get("started"),
                                        "weights_sha256": _weights(path),
                                        "threshold": scorer.threshold, "pairs": len(pairs.y), "rows": rows,
                                        "worst": max((n for n in PERTURBATIONS if n != "clean"),
                                                     key=lambda n: rows[n]["drop_pp"])}
    return out


def _setup(seed: int, n_pairs: int | None) -> dict:
    """What a measurement's numbers depend on besides the weights."""
    return {"seed": seed, "canvas": 28 * CANVAS, "perturbations": {k: v[0] for k, v in PERTURBATIONS.items()},
            "n_pairs": n_pairs}


def _weights(run_dir: str | Path) -> str:
    return sha256((resolve(run_dir) / "best.pt").read_bytes())


def _same_setup(previous: dict | None, setup: dict) -> bool:
    return bool(previous) and all(previous.get(k) == v for k, v in setup.items())


def stale(runs: list[str | Path], previous: dict | None, seed: int = 0, n_pairs: int | None = None) -> list[str | Path]:
    """The runs `previous` (a robustness.json) did not measure as a measurement now would: every run
    when its seed, canvas, perturbations or pair count differ, else those whose best.pt is not the
    file (sha256) it measured under the same name."""
    if not _same_setup(previous, _setup(seed, n_pairs)):
        return list(runs)
    return [p for p in runs if previous["runs"].get(Path(p).name, {}).get("weights_sha256") != _weights(p)]


def merged(previous: dict | None, new: dict) -> dict:
    """`previous` with the runs `new` measured replaced, where both were measured alike; else `new`."""
    if not _same_setup(previous, {k: new[k] for k in ("seed", "canvas", "perturbations", "n_pairs")}):
        return new
    return previous | {"runs": previous["runs"] | new["runs"]}


def write(out: dict, reports: Reports = Reports()) -> Path:
    import json

    return atomic_write_text(reports.robustness, json.dumps(out, indent=1, ensure_ascii=False))
