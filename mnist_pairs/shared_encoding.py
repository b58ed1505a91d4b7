"""Shared-encoding training (`pairing: shared`): encode each augmented image once per batch,
then score many pairs among the batch's embeddings with the (cheap) comparison head.

    a, b, y = batch_pairs(labels, generator)      # every same-class pair of a batch + as many others
    for x, (ia, ib), y, labels in shared_batches(data, cfg, epoch, device): ...   # train.train_step each

The seed's pipeline (`pairing: independent`) encodes both images of each of 12,000 pairs an
epoch: 24,000 encoder passes for 12,000 pairs. Here an epoch is one pass over the training
images in a random order keyed by (seed, epoch), each augmented once, in batches of
`batch_size` images; a batch of 256 images gives about 3,000 same-digit pairs, and as many
different-digit pairs are drawn among its other pairs, so every step is balanced. The encoder
(about 99 % of the FLOPs per pair) runs once per image. `train_pairs` is not used in this mode.

With `supcon_weight > 0` the pair loss gets a supervised-contrastive term (Khosla et al. 2020)
over the same batch: each image's L2-normalised embedding is pulled towards the other images of
its digit and pushed from the rest, through a softmax over the batch at `supcon_temperature`.
Both terms use the batch's whole same/different partition (`labels[:, None] == labels[None, :]`),
i.e. the per-image digit labels up to renaming: the model is supervised by digit labels, densely.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import augment
from . import hardware
from .subset import keyed_generator

_SHARED_KEY = 11


def batch_pairs(labels: torch.Tensor, generator: torch.Generator):
    """(ia, ib, target) indices into a batch: all i < j pairs of the same class, and as many
    pairs of different classes drawn without replacement, in random order."""
    same = labels[:, None] == labels[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    pos = torch.nonzero(same & upper)
    neg = torch.nonzero(~same & upper)
    k = min(len(pos), len(neg))
    pos = pos[torch.randperm(len(pos), generator=generator)[:k]]
    neg = neg[torch.randperm(len(neg), generator=generator)[:k]]
    pairs = torch.cat([pos, neg])
    target = torch.cat([torch.ones(k), torch.zeros(k)])
    order = torch.randperm(2 * k, generator=generator)
    return pairs[order, 0], pairs[order, 1], target[order]


def supcon_loss(e: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised-contrastive loss of a batch of embeddings (B,D): the mean over images that have
    a same-digit partner in the batch of −log softmax-probability of those partners, averaged."""
    z = F.normalize(e.float(), dim=1)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))     # an image is not its own partner
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    return -(log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]).mean()


def shared_batches(data, cfg, epoch: int, device):
    """The epoch's batches for train.train_step: (images x, (ia, ib), target y, digit labels),
    each image of the epoch augmented once and in one batch. Batches without a pair are skipped."""
    g = keyed_generator(cfg.seed, _SHARED_KEY, epoch)
    n = len(data.train_labels)
    order = torch.randperm(n, generator=g)
    aug = augment.draw_aug(n, cfg, augment.aug_generator(cfg.seed, epoch)).to(device) if cfg.augment else None
    fmt = hardware.memory_format(cfg)
    for i in range(0, n, cfg.batch_size):
        idx = order[i:i + cfg.batch_size]
        labels = data.train_labels[idx]
        ia, ib, y = batch_pairs(labels, g)
        if len(y) == 0:
            continue
        x = data.train_images[idx.to(device)]
        x = augment.augment(x, aug.rows(torch.arange(i, i + len(idx), device=device))) if aug else x
        x = augment.normalize(x).contiguous(memory_format=fmt)
        yield x, (ia.to(device), ib.to(device)), y.to(device), labels.to(device)
