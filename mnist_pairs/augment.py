"""Batched augmentation: the seed's random affine + random blur, on whole batches.

    p = draw_aug(2 * n, cfg, aug_generator(cfg.seed, epoch))   # CPU draws, device-independent
    x = augment(images[idx], p.rows(sides))                    # (B,1,28,28) on any device

One `affine_grid`/`grid_sample` call moves every image of a batch (rotation, shift, scale;
bilinear or whole-pixel nearest sampling, optionally with a smooth random elastic displacement
added to the sampling grid, as in Simard et al. 2003), and one grouped convolution blurs each
image with its own 3x3 Gaussian. All random numbers are drawn on the CPU from a generator keyed by
(training seed, epoch), so the augmentation does not depend on the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .subset import AUG_KEY, keyed_generator

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass
class AugParams:
    """Per-image random augmentation parameters."""
    theta: torch.Tensor   # (B,2,3) affine matrices for affine_grid
    kernel: torch.Tensor  # (B,1,3,3) blur kernels (a delta where no blur)
    mode: str = "bilinear"
    flow: torch.Tensor | None = None  # (B,28,28,2) elastic displacement in grid units, or None

    def _map(self, f) -> "AugParams":
        """The same parameters with `f` applied to every tensor (flow stays None when off)."""
        return AugParams(f(self.theta), f(self.kernel), self.mode, None if self.flow is None else f(self.flow))

    def to(self, device) -> "AugParams":
        return self._map(lambda t: t.to(device, non_blocking=True))

    def rows(self, index: torch.Tensor | slice) -> "AugParams":
        return self._map(lambda t: t[index])


def pair_rows(n: int, i: int, j: int) -> torch.Tensor:
    """Rows of an epoch's 2n augmentation draws for pairs [i, j): side a is row k, side b n + k."""
    return torch.cat([torch.arange(i, j), torch.arange(n + i, n + j)])


def augment_pair_batch(images: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: AugParams,
                       i: int, j: int) -> torch.Tensor:
    """Pairs [i, j) of an epoch (n pairs, p drawn for 2n images), both sides augmented in one
    call: rows [0, j-i) of the result are side a, rows [j-i, 2(j-i)) side b. In [0, 1]."""
    rows = pair_rows(len(a), i, j).to(p.theta.device)
    return augment(images[torch.cat([a[i:j], b[i:j]])], p.rows(rows))


def aug_generator(seed: int, epoch: int) -> torch.Generator:
    return keyed_generator(seed, AUG_KEY, epoch)


def draw_aug(n: int, cfg, generator: torch.Generator) -> AugParams:
    """Random affine (rotation, shift, scale) and random 3x3 Gaussian blur for n images."""
    u = torch.rand(n, 6, generator=generator, dtype=torch.float64)
    angle = (u[:, 0] * 2 - 1) * math.radians(cfg.aug_degrees)
    scale = cfg.aug_scale_min + u[:, 1] * (cfg.aug_scale_max - cfg.aug_scale_min)
    # translate is a fraction of the side; affine_grid's coordinates span [-1, 1] (2 units)
    tx = (u[:, 2] * 2 - 1) * cfg.aug_translate * 2
    ty = (u[:, 3] * 2 - 1) * cfg.aug_translate * 2
    # theta maps output coordinates to input coordinates: the inverse of rotate-scale-shift
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, sin, -(cos * tx + sin * ty)], 1),
                         torch.stack([-sin, cos, -(-sin * tx + cos * ty)], 1)], 1)
    sigma = 0.1 + u[:, 4] * (cfg.aug_blur_sigma_max - 0.1)
    blur = u[:, 5] < cfg.aug_blur_prob
    g1 = torch.exp(-(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) ** 2)[None] / (2 * sigma[:, None] ** 2))
    g1 = g1 / g1.sum(1, keepdim=True)
    k = g1[:, :, None] * g1[:, None, :]
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[1, 1] = 1
    k = torch.where(blur[:, None, None], k, delta)
    flow = elastic_flow(n, cfg.aug_elastic_alpha, cfg.aug_elastic_sigma, generator) if cfg.aug_elastic_alpha > 0 else None
    return AugParams(theta.float(), k.float().unsqueeze(1), cfg.aug_interpolation, flow)


def elastic_flow(n: int, alpha: float, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """(n,28,28,2) smooth random displacements: uniform noise in [-1, 1] per pixel and axis,
    smoothed by a Gaussian of `sigma` pixels, scaled so the largest displacement of each image
    is `alpha` pixels, in affine_grid units (2/28 per pixel). Drawn after the affine draws, so
    `aug_elastic_alpha: 0` leaves every other random number as it was."""
    noise = torch.rand(n, 2, 28, 28, generator=generator) * 2 - 1
    r = max(1, round(3 * sigma))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).repeat(2, 1, 1, 1)                                  # (2,1,1,2r+1): one per axis channel
    noise = F.conv2d(F.pad(noise, (r, r, 0, 0), mode="reflect"), g, groups=2)
    noise = F.conv2d(F.pad(noise, (0, 0, r, r), mode="reflect"), g.transpose(2, 3), groups=2)
    peak = noise.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return (noise / peak * alpha * 2 / 28).permute(0, 2, 3, 1).contiguous()


def augment(x: torch.Tensor, p: AugParams) -> torch.Tensor:
    """Apply per-image affine + blur to a batch (B,1,28,28) in [0, 1], on x's device."""
    grid = F.affine_grid(p.theta, list(x.shape), align_corners=False)
    if p.flow is not None:
        grid = grid + p.flow
    x = F.grid_sample(x, grid, mode=p.mode, padding_mode="zeros", align_corners=False)
    b = x.shape[0]
    # one grouped convolution blurs every image with its own kernel
    x = F.conv2d(x.reshape(1, b, 28, 28), p.kernel, padding=1, groups=b)
    return x.reshape(b, 1, 28, 28)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MNIST_MEAN) / MNIST_STD
