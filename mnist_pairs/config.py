"""The one configuration object of a run.

`Config` is a frozen dataclass whose defaults are the seed study's settings (seed §4). It is
built from a `params/*.yaml` file plus overrides and validated before any work starts:
a YAML error, duplicate key, unknown key, wrong type, non-finite number or impossible value
raises `ConfigError` naming the file and line or the key. The run folder's `config.yaml`
records the device and precision the run actually used.

    cfg = load_config("params/seed_siamese.yaml", epochs=3)
    cfg.data_path                    # where MNIST and the cached subsets live
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError, refuse_unknown
from .paramfile import parse_int_list, read_yaml
from .paths import EXPERIMENTS_DIR, data_root, resolve

EMBEDDING_MODELS = ("siamese", "siamese_deep")  # the models that embed each image (models.py)
# The allowed values of every string key with a fixed set of them (the seed's choice first).
CHOICES = {"model": ("siamese", "concat", "siamese_deep"), "protocol": ("test", "validation"),
           "precision": ("auto", "fp32", "bf16", "fp16"), "device": ("auto", "cpu", "cuda"),
           "aug_interpolation": ("bilinear", "nearest"), "dataset": ("mnist", "fashion_mnist"),
           "loss": ("bce_logits", "bce_sigmoid"), "optimizer": ("adamw", "adam"),
           "pair_sampling": ("balanced", "random"), "lr_schedule": ("plateau", "constant", "cosine"),
           "pairing": ("independent", "shared"), "checkpoint": ("best", "final")}
SEED_LIMIT = 2 ** 32  # numpy and torch generators take seeds in [0, 2**32)


@dataclass(frozen=True)
class Config:
    # --- what is trained, and how it is selected
    model: str = "siamese"            # "siamese" (SiameseCompareNet), "concat" (ConcatCNN baseline) or
                                      # "siamese_deep" (SiameseDeepNet: deeper encoder, smaller head)
    protocol: str = "validation"      # "validation": LR schedule, best epoch and threshold chosen on
                                      # pairs among 1,000 held-out training images; "test": chosen on
                                      # the 4,000 test pairs, as the seed did (test-selected)
    seed: int = 42                    # training seed: init, each epoch's pairs, augmentation, dropout
    data_seed: int = 42               # data seed: the subset, test, validation and held-out pairs
    # --- data (seed §2)
    dataset: str = "mnist"            # "mnist", or "fashion_mnist" (10 clothing classes, same format)
    train_classes: str = ""           # "" -> all 10; "0-7": train and select on these classes only,
                                      # and score open-set pairs with the others (openset.py)
    subset_fraction: float = 0.1      # share of MNIST train and test drawn once: 6,000 / 1,000 images
    train_pairs: int = 12000          # fresh balanced pairs per epoch
    pairing: str = "independent"      # "independent": each pair's two images encoded (and augmented) on
                                      # their own, as the seed does; "shared": each image of a batch
                                      # encoded once, pairs formed among the batch (shared_encoding.py)
    test_pairs: int = 4000            # balanced test pairs, drawn once and saved
    val_images: int = 1000            # validation protocol: training images held out, stratified by digit
    val_pairs: int = 4000             # validation protocol: balanced pairs among them, drawn once
    heldout_pairs: int = 40000        # pairs among the MNIST test images outside the subset, scored
                                      # once at the end of a run (0: skip)
    confirm_pairs: int = 0            # > 0: the confirmation set (confirmation.py): pairs among the MNIST
                                      # *training* images outside the subset (same writers as the training
                                      # images), scored once at the end of a run, never chosen on (0: skip)
    data_root: str = ""               # "" -> $MNIST_PAIRS_DATA or <project>/data
    # --- optimisation (seed §4)
    epochs: int = 25
    batch_size: int = 256
    eval_batch_size: int = 2048       # evaluation has no backward pass: larger batches are cheaper
    lr: float = 8e-4                  # AdamW learning rate
    weight_decay: float = 1e-4
    optimizer: str = "adamw"          # "adam": Adam with weight_decay as an L2 term (the seed's step ② ablated)
    loss: str = "bce_logits"          # "bce_sigmoid": plain BCE on sigmoid outputs (before the seed's step ②)
    pair_sampling: str = "balanced"   # "random": uniform random pairs, about 1 in 10 same-digit (before step ③)
    dropout: bool = True              # False: the head's two Dropout layers become identities
    lr_schedule: str = "plateau"      # "constant": keep lr for every epoch (no ReduceLROnPlateau);
                                      # "cosine": decay from lr to lr_min over the run's epochs
    checkpoint: str = "best"          # which weights best.pt holds: "best": the epoch with the highest
                                      # selection accuracy (the seed's rule); "final": the last epoch's,
                                      # fixed in advance (no choice among epochs; the threshold is still
                                      # set on the selection pairs)
    ema: float = 0.0                  # > 0: score, select and save an EMA of the weights with this
                                      # decay per step (optim.py); 0: the weights as trained
    supcon_weight: float = 0.0        # > 0 (pairing "shared" only): add this times a supervised-contrastive
                                      # loss on the batch's normalised embeddings (shared_encoding.py)
    supcon_temperature: float = 0.1   # its temperature
    lr_factor: float = 0.5            # ReduceLROnPlateau on the selection loss
    lr_patience: int = 2
    lr_min: float = 1e-5
    # --- augmentation (seed §4: random affine + random blur), applied to whole batches.
    augment: bool = True              # False: train on the images as they are
    # The seed gives no strengths; these won on validation pairs under a rule fixed before the
    # runs (tools/select_augmentation.py, reports/aug_selection.json): candidate A_mild_bilinear.
    aug_degrees: float = 10.0         # rotation in [-d, d] degrees
    aug_translate: float = 0.1        # shift up to this fraction of the image side
    aug_scale_min: float = 0.9
    aug_scale_max: float = 1.1
    aug_blur_prob: float = 0.3        # share of images blurred with a 3x3 Gaussian
    aug_blur_sigma_max: float = 1.0   # blur sigma drawn uniformly in [0.1, this]
    aug_interpolation: str = "bilinear"  # "nearest": whole pixels, like torchvision's RandomAffine
    aug_elastic_alpha: float = 0.0    # > 0: add a smooth random elastic displacement of at most this
                                      # many pixels to each image (augment.py); 0: off (the seed's)
    aug_elastic_sigma: float = 4.0    # smoothness of that displacement: Gaussian sigma in pixels
    # --- hardware
    device: str = "auto"              # "auto" picks CUDA when present
    precision: str = "auto"           # "auto": fp16 autocast + GradScaler on CUDA, bf16 autocast on CPUs
                                      # with native bf16 (AVX512-BF16/AMX), else fp32. A run's
                                      # config.yaml records what was used.
    channels_last: bool = True        # faster convolutions with oneDNN / cuDNN
    compile: bool = False             # torch.compile the model (seed: off by default)
    fused_blocks: bool = False        # CPU only (fp32 or bf16): each BatchNorm -> ReLU -> pool of the
                                      # encoder trains as one C++ kernel (fused.py): same arithmetic,
                                      # less memory traffic, faster steps
    num_threads: int = 0              # torch intra-op threads; 0 -> all cores
    # --- output
    out_dir: str = EXPERIMENTS_DIR     # run folders go under here (relative to the project root)
    tensorboard: bool = False         # also write TensorBoard events to <run>/tensorboard (tboard.py)
    run_name: str = ""                # "" -> <model>_<YYYYmmdd_HHMMSS>

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _field_types()[f.name])
        n_train = round(60000 * self.subset_fraction)
        checks = [(getattr(self, k) in v, f"{k} must be one of {v}, got {getattr(self, k)!r}")
                  for k, v in CHOICES.items()]
        checks += [
            (0 <= self.seed < SEED_LIMIT, f"seed must be in [0, 2**32), got {self.seed}"),
            (0 <= self.data_seed < SEED_LIMIT, f"data_seed must be in [0, 2**32), got {self.data_seed}"),
            # 2 images of each of the 10 digits in the 1,000-image test split at the very least;
            # the exact per-digit check runs on the drawn subset, before it is cached
            (10000 * self.subset_fraction >= 20 and self.subset_fraction <= 1,
             f"subset_fraction must be in [0.002, 1] (at least 2 test images per digit), got {self.subset_fraction}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch_size must be >= 2 (BatchNorm), got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.train_pairs >= 2 and self.train_pairs % 2 == 0,
             f"train_pairs must be even and >= 2 (half same, half different), got {self.train_pairs}"),
            (self.test_pairs >= 2 and self.test_pairs % 2 == 0,
             f"test_pairs must be even and >= 2, got {self.test_pairs}"),
            (self.val_pairs >= 2 and self.val_pairs % 2 == 0, f"val_pairs must be even and >= 2, got {self.val_pairs}"),
            (self.heldout_pairs >= 0 and self.heldout_pairs % 2 == 0,
             f"heldout_pairs must be even and >= 0, got {self.heldout_pairs}"),
            (self.confirm_pairs >= 0 and self.confirm_pairs % 2 == 0,
             f"confirm_pairs must be even and >= 0, got {self.confirm_pairs}"),
            (20 <= self.val_images <= n_train // 2,
             f"val_images must be in [20, half the training subset = {n_train // 2}], got {self.val_images}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 < self.lr_factor < 1, f"lr_factor must be in (0, 1), got {self.lr_factor}"),
            (self.lr_patience >= 0, f"lr_patience must be >= 0, got {self.lr_patience}"),
            (0 <= self.lr_min <= self.lr, f"lr_min must be in [0, lr], got {self.lr_min}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1) (0: off), got {self.ema}"),
            (self.supcon_weight >= 0, f"supcon_weight must be >= 0 (0: off), got {self.supcon_weight}"),
            (self.supcon_temperature > 0, f"supcon_temperature must be > 0, got {self.supcon_temperature}"),
            (0 <= self.aug_degrees <= 180, f"aug_degrees must be in [0, 180], got {self.aug_degrees}"),
            (0 <= self.aug_translate < 1, f"aug_translate must be in [0, 1), got {self.aug_translate}"),
            (0 < self.aug_scale_min <= self.aug_scale_max,
             f"need 0 < aug_scale_min <= aug_scale_max, got {self.aug_scale_min}, {self.aug_scale_max}"),
            (0 <= self.aug_blur_prob <= 1, f"aug_blur_prob must be in [0, 1], got {self.aug_blur_prob}"),
            (0 <= self.aug_elastic_alpha <= 14, f"aug_elastic_alpha must be in [0, 14] pixels, got {self.aug_elastic_alpha}"),
            (0.5 <= self.aug_elastic_sigma <= 9, f"aug_elastic_sigma must be in [0.5, 9] pixels, got {self.aug_elastic_sigma}"),
            (self.aug_blur_sigma_max >= 0.1, f"aug_blur_sigma_max must be >= 0.1, got {self.aug_blur_sigma_max}"),
            (self.num_threads >= 0, f"num_threads must be >= 0, got {self.num_threads}"),
            (not self.fused_blocks or self.device in ("auto", "cpu"),
             f"fused_blocks needs the CPU (its kernels are CPU code), got device {self.device!r}; "
             "set device: cpu or fused_blocks: false"),
            (not self.fused_blocks or self.channels_last,
             "fused_blocks needs channels_last: true (its kernels read the channels_last layout)"),
            (not (self.fused_blocks and self.compile),
             "fused_blocks and compile exclude each other: torch.compile generates its own kernels for these blocks"),
            ("/" not in self.run_name and self.run_name not in (".", ".."),
             f"run_name must be a plain folder name, got {self.run_name!r}"),
        ]
        try:
            classes = self.seen_classes
        except ConfigError as e:
            checks.append((False, str(e)))
        else:
            checks += [
                (self.supcon_weight == 0 or self.pairing == "shared",
                 "supcon_weight > 0 needs pairing 'shared': the contrastive term compares the embeddings of a batch"),
                (self.pairing == "independent" or self.model in EMBEDDING_MODELS,
                 "pairing 'shared' needs a Siamese model ('siamese' or 'siamese_deep'): it compares embeddings"),
                ((2 <= len(classes) <= 8 or len(classes) == 10) and all(0 <= c <= 9 for c in classes),
                 f"train_classes must name 2 to 8 of the classes 0-9 (at least 2 left unseen), "
                 f"got {self.train_classes!r}"),
                (len(classes) == 10 or self.protocol == "validation",
                 "train_classes needs protocol 'validation': the test pairs hold the unseen classes, and "
                 "nothing may be chosen on them"),
                (len(classes) == 10 or (self.model in EMBEDDING_MODELS and self.heldout_pairs > 0),
                 "train_classes needs a Siamese model ('siamese' or 'siamese_deep') and heldout_pairs > 0: the unseen classes are scored "
                 "on held-out images through the encoder's embeddings"),
            ]
        errors = [msg for ok, msg in checks if not ok]
        if errors:
            raise ConfigError("invalid config: " + "; ".join(errors))

    # Derived values are properties, never YAML keys.
    @property
    def out_path(self) -> Path:
        return resolve(self.out_dir)

    @property
    def data_path(self) -> Path:
        """The data root: data_root, else $MNIST_PAIRS_DATA, else <project>/data."""
        return data_root(self.data_root or None)

    @property
    def seen_classes(self) -> tuple[int, ...]:
        """The classes trained on: all ten unless train_classes names some."""
        return tuple(parse_int_list(self.train_classes, "train_classes")) if self.train_classes else tuple(range(10))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def replace(self, **overrides: Any) -> "Config":
        return from_dict({**self.to_dict(), **overrides})


@functools.cache
def _field_types() -> dict[str, type]:
    return typing.get_type_hints(Config)


def _check_type(name: str, value: Any, expected: type) -> None:
    # YAML and papermill give ints where floats are meant (lr: 1 ...): accept int for float,
    # but never bool for a number, nor a number for a bool or a string; floats must be finite.
    if expected in (int, float):
        numbers = (int, float) if expected is float else (int,)
        ok = isinstance(value, numbers) and not isinstance(value, bool)
        if ok and expected is float and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(f"{name} must be {expected.__name__}, got {type(value).__name__} {value!r}")


def from_dict(values: Mapping[str, Any]) -> Config:
    """Build a Config, naming any unknown key (with the closest known one)."""
    refuse_unknown(values, [f.name for f in fields(Config)], "config key")
    return Config(**{k: _coerce_float(v) if _field_types()[k] is float else v for k, v in values.items()})


def _coerce_float(v: Any) -> Any:
    # PyYAML reads `8e-4` (no dot) as a string and papermill passes `-p lr 1` as an int.
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> Config:
    """Config from a YAML params file (relative to the project root) plus overrides."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    values.update(overrides)
    try:
        return from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{resolve(path)}: {e}" if path else str(e)) from None
