"""The three pair classifiers, chosen by name (`build_model`; config.CHOICES["model"] lists the names).

- `SiameseCompareNet` (seed §3, 192,449 parameters): a shared CNN encoder embeds each
  image; the head sees concat(|a-b|, a*b), so swapping the inputs gives the same logit.
- `ConcatCNN` (seed's first version, 187,649 parameters): the two images side by side as
  one 28x56 image through a plain CNN.
- `SiameseDeepNet` (issue 9's deeper-encoder lever, 189,025 parameters): the same Siamese
  comparison with two 3x3 convolutions per resolution in the encoder and a smaller head.

Each takes two batches (B,1,28,28) and returns logits (B,). With `fused=True` a training-mode
pass runs each BatchNorm -> ReLU -> pool of the convolutional stack as one C++ kernel (fused.py;
CPU, fp32 or bf16 autocast): the same parameters and gradients, less memory traffic. The Siamese net can also embed
images once (`embed`) and compare embeddings (`compare_embeddings`): the cheap way to
score one image against a gallery.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .accel.fused import run_sequential
from .config import CHOICES
from .errors import refuse_unknown


def _conv_block(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _dropout(p: float, on: bool) -> nn.Module:
    # an identity in the same place keeps the state_dict keys of the seed's model
    return nn.Dropout(p) if on else nn.Identity()


class SiameseCompareNet(nn.Module):
    def __init__(self, dropout: bool = True, fused: bool = False) -> None:
        super().__init__()
        self.encoder = self.build_encoder()
        self.head = self.build_head(dropout)
        self.fused = fused

    @staticmethod
    def build_encoder() -> nn.Sequential:
        return nn.Sequential(
            *_conv_block(1, 32, 5), nn.MaxPool2d(2),     # (B,1,28,28) -> (B,32,14,14)
            *_conv_block(32, 64, 3), nn.MaxPool2d(2),    # -> (B,64,7,7)
            *_conv_block(64, 128, 3), nn.AdaptiveAvgPool2d(1),  # -> (B,128,1,1)
            nn.Flatten(),                                # -> (B,128)
            nn.Linear(128, 128), nn.ReLU(inplace=True),  # projection
        )

    @staticmethod
    def build_head(dropout: bool) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(256, 256), nn.ReLU(inplace=True), _dropout(0.4, dropout),
            nn.Linear(256, 64), nn.ReLU(inplace=True), _dropout(0.2, dropout),
            nn.Linear(64, 1),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return run_sequential(self.encoder, x) if self.fused else self.encoder(x)  # (B,1,28,28) -> (B,128)

    def compare_embeddings(self, ea: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([(ea - eb).abs(), ea * eb], dim=1)  # (B,256), symmetric in a and b
        return self.head(feats).squeeze(1)               # -> (B,)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # one encoder pass over both halves: twice the batch, half the kernel launches
        e = self.embed(torch.cat([a, b], dim=0))
        ea, eb = e.chunk(2, dim=0)
        return self.compare_embeddings(ea, eb)


class SiameseDeepNet(SiameseCompareNet):
    """The parameters moved from the head to the encoder: five 3x3 convolutions (about 3x the
    seed encoder's multiply-adds per image), a head of 256 -> 128 -> 1."""

    @staticmethod
    def build_encoder() -> nn.Sequential:
        return nn.Sequential(
            *_conv_block(1, 32, 3), *_conv_block(32, 32, 3), nn.MaxPool2d(2),   # -> (B,32,14,14)
            *_conv_block(32, 64, 3), *_conv_block(64, 64, 3), nn.MaxPool2d(2),  # -> (B,64,7,7)
            *_conv_block(64, 128, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),    # -> (B,128)
            nn.Linear(128, 128), nn.ReLU(inplace=True),
        )

    @staticmethod
    def build_head(dropout: bool) -> nn.Sequential:
        return nn.Sequential(nn.Linear(256, 128), nn.ReLU(inplace=True), _dropout(0.4, dropout), nn.Linear(128, 1))


class ConcatCNN(nn.Module):
    def __init__(self, dropout: bool = True, fused: bool = False) -> None:
        super().__init__()
        self.fused = fused
        self.features = nn.Sequential(
            *_conv_block(1, 32, 3), nn.MaxPool2d(2),     # (B,1,28,56) -> (B,32,14,28)
            *_conv_block(32, 64, 3), nn.MaxPool2d(2),    # -> (B,64,7,14)
            *_conv_block(64, 64, 3),                     # -> (B,64,7,14)
            nn.AdaptiveAvgPool2d((2, 4)), nn.Flatten(),  # -> (B,512): keeps left/right apart
        )
        self.head = nn.Sequential(nn.Linear(512, 256), nn.ReLU(inplace=True), _dropout(0.4, dropout),
                                  nn.Linear(256, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([a, b], dim=3)                     # (B,1,28,56): side by side
        x = run_sequential(self.features, x) if self.fused else self.features(x)
        return self.head(x).squeeze(1)                   # -> (B,)


# The class of each name config.CHOICES["model"] allows (that tuple is the one list of names).
MODELS = dict(zip(CHOICES["model"], (SiameseCompareNet, ConcatCNN, SiameseDeepNet), strict=True))


def build_model(name: str, dropout: bool = True, fused: bool = False) -> nn.Module:
    refuse_unknown([name], MODELS, "model")
    return MODELS[name](dropout=dropout, fused=fused)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.cache
def parameter_count(name: str) -> int:
    """The trainable parameters of the model called `name` (built once per process)."""
    return count_parameters(build_model(name))


@torch.no_grad()
def embed_images(model: SiameseCompareNet, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """(N,1,28,28) normalised images -> (N,128) embeddings, model in eval mode."""
    return torch.cat([model.embed(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def one_vs_many(model: SiameseCompareNet, query_emb: torch.Tensor, gallery_emb: torch.Tensor) -> torch.Tensor:
    """Logits (Q,G) of each query against every gallery image, from cached embeddings:
    only the small head runs per pair, the encoder ran once per image."""
    q, g = len(query_emb), len(gallery_emb)
    ea = query_emb[:, None, :].expand(q, g, -1).reshape(q * g, -1)
    eb = gallery_emb[None, :, :].expand(q, g, -1).reshape(q * g, -1)
    return model.compare_embeddings(ea, eb).reshape(q, g)


@torch.no_grad()
def score_pairs(model: nn.Module, images: torch.Tensor, idx_a: torch.Tensor, idx_b: torch.Tensor,
                batch_size: int = 2048) -> torch.Tensor:
    """Logits for pairs (idx_a[i], idx_b[i]) of `images` (N,1,28,28), model in eval mode.

    A model with `embed` encodes each image that a pair uses once and compares embeddings,
    instead of encoding every image once per pair it appears in (4,000 pairs of 1,000 images:
    8x less). In eval mode an image's embedding does not depend on the other images of its batch.
    """
    idx_a, idx_b = idx_a.to(images.device), idx_b.to(images.device)
    if hasattr(model, "embed"):
        used, where = torch.unique(torch.cat([idx_a, idx_b]), return_inverse=True)
        emb = embed_images(model, images if len(used) == len(images) else images[used], batch_size)
        idx_a, idx_b = where[: len(idx_a)], where[len(idx_a):]
        return torch.cat([model.compare_embeddings(emb[idx_a[i:i + batch_size]], emb[idx_b[i:i + batch_size]])
                          for i in range(0, len(idx_a), batch_size)])
    return torch.cat([model(images[idx_a[i:i + batch_size]], images[idx_b[i:i + batch_size]])
                      for i in range(0, len(idx_a), batch_size)])
