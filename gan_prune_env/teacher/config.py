"""Configuration of teacher training (the reference Pix2Pix/CycleGAN recipes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gan_prune_env.checkpoint import WEIGHT_DTYPES
from gan_prune_env.data import DataConfig
from gan_prune_env.devices import check_device
from gan_prune_env.families import FAMILIES, check_family_configs
from gan_prune_env.losses import GAN_MODES
from gan_prune_env.models import DiscriminatorConfig, GeneratorConfig

DEFAULT_GAN_MODE = {"pix2pix": "vanilla", "cyclegan": "lsgan"}

OPERATIONAL_KEYS = frozenset({
    "n_steps", "epochs", "log_dir", "log_every", "image_every",
    "preview_images", "save_every", "keep_train_states", "weights_dtype", "num_workers",
    "num_threads", "device", "progress", "sync_batchnorm",
})
"""Keys that may change between an interrupted run and its resumption; all others may not."""


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict update for layered configs; a key ``a.b`` addresses ``base["a"]["b"]``."""
    result = dict(base)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            value = {rest: value}
        if isinstance(value, dict) and isinstance(result.get(head), dict):
            result[head] = merge_overrides(result[head], value)
        else:
            result[head] = value
    return result


AUTOCAST_DTYPES = ("bfloat16",)
"""Mixed-precision dtypes; float16 would need a gradient scaler, bfloat16 does not."""


@dataclass
class TeacherTrainConfig:
    """How to train a Pix2Pix or CycleGAN teacher from scratch.

    Steps count optimiser updates (one batch each). Loss weights follow the reference code:
    Pix2Pix ``G = GAN + lambda_l1 * L1``; CycleGAN ``G = GAN_AB + GAN_BA + lambda_cycle * (cycle
    losses) + lambda_cycle * lambda_identity * (identity losses)``, i.e. 10 and 5 by default.
    """

    family: str = "pix2pix"
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    n_steps: int = 2000
    """Total optimiser steps (ignored when ``epochs`` is set)."""
    epochs: int | None = None
    """If set, train ``epochs`` passes over the train split instead of ``n_steps`` steps."""
    batch_size: int = 1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay_steps: int = 0
    """The learning rate decays linearly to zero over the last ``lr_decay_steps`` steps
    (the reference ``n_epochs_decay``); 0 keeps it constant."""
    gan_mode: str | None = None
    """``"vanilla"`` or ``"lsgan"``; None picks the family's reference choice (vanilla for
    Pix2Pix, lsgan for CycleGAN)."""
    lambda_l1: float = 100.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    adversarial_warmup_steps: int = 0
    """The generators' adversarial terms are weighted ``min(1, step / adversarial_warmup_steps)``
    (0-based step): they ramp up linearly from 0 while every other term and the discriminators
    train at full strength from the start; 0 weights them 1 throughout (the reference)."""
    pool_size: int = 50
    """CycleGAN image-pool size; 0 feeds the discriminators the current fakes only."""
    seed: int = 0
    log_dir: str | None = None
    """TensorBoard folder; None means ``<out_dir>/tensorboard``."""
    log_every: int = 10
    """Steps between loss scalars in TensorBoard."""
    image_every: int = 200
    """Steps between preview image grids (input | output | target); 0 disables them."""
    preview_images: int = 4
    """Items of the data's evaluation split shown in the previews."""
    save_every: int = 500
    """Steps between train-state checkpoints (one is always written when a run stops)."""
    keep_train_states: int = 2
    """Most recent train-state checkpoints kept on disk."""
    weights_dtype: str = "float32"
    """Storage dtype of the final teacher file (``"float16"`` halves its size)."""
    num_workers: int = 0
    num_threads: int | None = None
    """CPU threads of torch for this process (None keeps torch's default). On a machine shared
    with other jobs, 1 can be many times faster than oversubscribed threads."""
    sync_batchnorm: bool = False
    """With several processes (``torchrun``), BatchNorm statistics over the whole global batch
    (PyTorch's ``SyncBatchNorm``) instead of each rank's rows, so N ranks train a BatchNorm
    network as one process at the same global batch does. CUDA devices only; no effect in one
    process; InstanceNorm networks do not need it."""
    device: str = "cpu"
    autocast: str | None = None
    """Mixed precision: ``"bfloat16"`` runs the forward passes under ``torch.autocast`` (weights,
    optimiser states and backward accumulation stay float32; bfloat16 needs no loss scaling).
    Worth it on GPUs with bfloat16 tensor cores and on CPUs with native bfloat16 (AMX: 1.1x a
    fine-tuning step at 64 px, 2.2x at 128 px); elsewhere on CPU it is slower. None: float32."""
    progress: bool = True

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast {self.autocast!r} is not one of {list(AUTOCAST_DTYPES)} "
                             "(or null for float32)")
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not one of {FAMILIES}")
        if self.gan_mode is not None and self.gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode {self.gan_mode!r} is not one of {GAN_MODES}")
        if self.weights_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weights_dtype {self.weights_dtype!r} is not one of "
                             f"{list(WEIGHT_DTYPES)}")
        for name in ("n_steps", "batch_size", "log_every", "save_every", "keep_train_states"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_decay_steps", "adversarial_warmup_steps", "pool_size", "image_every",
                     "num_workers", "preview_images", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("epochs", "num_threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or len(self.betas) != 2:
            raise ValueError("lr must be positive and betas a pair")
        check_family_configs(self.family, self.generator, self.discriminator)

    @property
    def resolved_gan_mode(self) -> str:
        return self.gan_mode or DEFAULT_GAN_MODE[self.family]

    def total_steps(self, steps_per_epoch: int) -> int:
        """Number of optimiser steps of the whole run."""
        return self.epochs * steps_per_epoch if self.epochs is not None else self.n_steps

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate of 0-based ``step``: constant, then linear decay to 0 (reference
        ``linear`` policy, per step instead of per epoch)."""
        decay_start = total_steps - self.lr_decay_steps
        if self.lr_decay_steps == 0 or step < decay_start:
            return self.lr
        return self.lr * (1.0 - (step - decay_start + 1) / (self.lr_decay_steps + 1))

    def adversarial_weight_at(self, step: int) -> float:
        """Weight of the generators' adversarial terms at 0-based ``step``: a linear ramp from 0
        over ``adversarial_warmup_steps``, then 1."""
        if self.adversarial_warmup_steps == 0:
            return 1.0
        return min(1.0, step / self.adversarial_warmup_steps)
