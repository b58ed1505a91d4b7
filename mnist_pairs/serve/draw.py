"""Draw two digits and see whether the published model thinks they are the same digit
(notebooks/04_draw in JupyterLab, or `make demo` in Voila).

    demo = DrawDemo()        # the best published model (compare's default), or DrawDemo(run="reports/runs/…")
    demo.widget              # two pads, pen width, Clear; P(same digit) and the decision at the run's
                             # threshold; each drawing as the model sees it (28x28); its top-3 digits

Each pad keeps its own picture: the strokes are drawn on the canvas for the eye and, the same
instant, with Pillow into a 224x224 grayscale image (white ink on black). That image goes through
`images.to_mnist`, the conversion `compare` uses, and the scorer `compare` uses. The top-3 digits
come from one-shot matching against `GALLERY_PER_DIGIT` held-out MNIST images of each digit (the
highest probability of "same digit" among a digit's references).
"""
from __future__ import annotations

import io

import numpy as np
import torch

from ..metrics import probability
from .deploy import open_scorer
from .images import ImageError, to_mnist

PAD = 224                 # pixels of a drawing pad
GALLERY_PER_DIGIT = 5     # held-out references per digit for the top-3


class Pad:
    """One drawing pad: an ipycanvas Canvas for the eye, a Pillow image for the model."""

    def __init__(self, on_stroke, pen) -> None:
        from ipycanvas import Canvas
        from PIL import Image, ImageDraw

        self.on_stroke, self.pen = on_stroke, pen
        self.canvas = Canvas(width=PAD, height=PAD)
        self.canvas.layout.border = "1px solid #888"
        self.image = Image.new("L", (PAD, PAD), 0)
        self._ink = ImageDraw.Draw(self.image)
        self.last: tuple[float, float] | None = None
        self.canvas.on_mouse_down(self._down)
        self.canvas.on_mouse_move(self._move)
        self.canvas.on_mouse_up(self._up)
        self.canvas.on_mouse_out(self._up)
        self.clear()

    def clear(self) -> None:
        self.canvas.fill_style = "black"
        self.canvas.fill_rect(0, 0, PAD, PAD)
        self._ink.rectangle((0, 0, PAD, PAD), fill=0)
        self.last = None

    def _segment(self, a: tuple[float, float], b: tuple[float, float]) -> None:
        w = int(self.pen.value)
        self.canvas.stroke_style, self.canvas.line_width, self.canvas.line_cap = "white", w, "round"
        self.canvas.stroke_line(a[0], a[1], b[0], b[1])
        self._ink.line([a, b], fill=255, width=w)
        for x, y in (a, b):                                      # round ends, as the canvas draws them
            self._ink.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)

    def _down(self, x: float, y: float) -> None:
        self.last = (x, y)
        self._segment(self.last, self.last)

    def _move(self, x: float, y: float) -> None:
        if self.last is not None:
            self._segment(self.last, (x, y))
            self.last = (x, y)

    def _up(self, x: float, y: float) -> None:
        if self.last is not None:
            self.last = None
            self.on_stroke()

    def digit(self) -> torch.Tensor | None:
        """The drawing as the model sees it, (1, 28, 28), or None while the pad is empty."""
        try:
            return torch.from_numpy(to_mnist(np.asarray(self.image, dtype=np.float32) / 255.0, "pad"))[None]
        except ImageError:
            return None


def reference_gallery(run_cfg, per_digit: int = GALLERY_PER_DIGIT) -> tuple[torch.Tensor, np.ndarray]:
    """The first `per_digit` held-out images of each digit (MNIST test split, outside the subset)."""
    from ..data import load_data

    held = load_data(run_cfg, log=lambda m: None).sets["heldout"]
    idx = np.concatenate([np.flatnonzero(held.labels.numpy() == d)[:per_digit] for d in range(10)])
    return held.images[idx].float(), held.labels.numpy()[idx]


def _png(x: torch.Tensor) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((x.reshape(28, 28).numpy() * 255).astype(np.uint8)).resize((112, 112), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue()


class DrawDemo:
    """Two pads, the pen width, Clear, and what the model says (see the module docstring)."""

    def __init__(self, run: str | None = None) -> None:
        import ipywidgets as W

        from ..runs import Run
        from .deploy import default_run

        self.run = Run.open(run) if run else default_run()
        self.scorer = open_scorer(self.run.dir)
        gallery, self.gallery_labels = reference_gallery(self.run.cfg)
        self.gallery_emb = self.scorer.embed(gallery)
        self.pen = W.IntSlider(value=16, min=4, max=32, description="笔宽")
        self.pads = [Pad(self.update, self.pen) for _ in range(2)]
        self.clear_button = W.Button(description="清除", icon="eraser")
        self.clear_button.on_click(lambda _: self.clear())
        self.views = [W.Image(format="png", width=112, height=112) for _ in self.pads]
        self.guesses = [W.HTML() for _ in self.pads]
        self.result = W.HTML()
        columns = [W.VBox([W.HTML(f"<b>{t}</b>"), p.canvas, W.HTML("模型看到的 28×28："), v, g])
                   for t, p, v, g in zip(("第一个数字", "第二个数字"), self.pads, self.views, self.guesses)]
        self.widget = W.VBox([W.HBox(columns), W.HBox([self.pen, self.clear_button]), self.result])
        self.update()

    def clear(self) -> None:
        for p in self.pads:
            p.clear()
        self.update()

    def top3(self, x: torch.Tensor) -> list[tuple[int, float]]:
        """The three digits whose best reference is most likely the same digit as x, with that probability."""
        emb = self.scorer.embed(x[None])
        z = self.scorer.logits(np.repeat(emb, len(self.gallery_emb), axis=0), self.gallery_emb).reshape(-1)
        best = {d: float(z[self.gallery_labels == d].max()) for d in range(10)}
        return [(d, float(probability(best[d]))) for d in sorted(best, key=best.get, reverse=True)[:3]]

    def update(self) -> None:
        digits = [p.digit() for p in self.pads]
        for x, view, guess in zip(digits, self.views, self.guesses):
            view.value = _png(x if x is not None else torch.zeros(1, 28, 28))
            guess.value = "（空白）" if x is None else "最像：" + "，".join(f"{d}（{p:.2f}）" for d, p in self.top3(x))
        if any(x is None for x in digits):
            self.result.value = '<span class="mnist-pairs-result" data-state="waiting">在两个画板上各写一个数字。</span>'
            return
        p = self.scorer.probability(*digits)
        same = p > self.scorer.threshold
        self.result.value = (f'<span class="mnist-pairs-result" data-state="scored" data-probability="{p:.4f}" '
                             f'data-same="{int(same)}"><b>P(同一数字) = {p:.3f}</b>：{"相同" if same else "不同"}'
                             f'（阈值 {self.scorer.threshold:.3f}，模型 {self.run.dir.name}）</span>')
