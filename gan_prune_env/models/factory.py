"""Build generators and discriminators from dataclass configs (the reference ``define_G``/``define_D``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gan_prune_env.models.norms import NORM_TYPES, get_norm_layer
from gan_prune_env.models.patchgan import NLayerDiscriminator
from gan_prune_env.models.resnet import ResnetGenerator
from gan_prune_env.models.separable import separable_unet
from gan_prune_env.models.unet import UnetGenerator

GENERATOR_ARCHS = ("unet_256", "unet_128", "unet_auto", "resnet_9blocks", "resnet_6blocks")
DISCRIMINATOR_ARCHS = ("basic", "n_layers")


@dataclass
class GeneratorConfig:
    """Generator architecture. ``unet_auto`` picks ``log2(image_size)`` levels so the bottleneck is
    1x1, as ``unet_256`` does at 256 px; use it for small images."""

    arch: str = "unet_256"
    input_nc: int = 3
    output_nc: int = 3
    ngf: int = 64
    norm: str = "batch"
    use_dropout: bool = False
    image_size: int = 256
    separable: bool = False
    """Every 4x4 convolution but the RGB stem depthwise-separable (``separable_unet``, GAN
    Compression's block type): a student layout, U-Nets only."""

    def __post_init__(self) -> None:
        if self.arch not in GENERATOR_ARCHS:
            raise ValueError(f"generator arch {self.arch!r} is not one of {GENERATOR_ARCHS}")
        if self.separable and not self.arch.startswith("unet"):
            raise ValueError(f"separable: true is a U-Net layout; arch {self.arch!r} is not one")
        if self.norm not in NORM_TYPES:
            raise ValueError(f"norm {self.norm!r} is not one of {NORM_TYPES}")
        if self.ngf < 1 or self.input_nc < 1 or self.output_nc < 1:
            raise ValueError("ngf, input_nc and output_nc must be positive")
        if self.arch == "unet_auto":
            unet_depth(self.image_size)


@dataclass
class DiscriminatorConfig:
    """PatchGAN discriminator; ``input_nc`` is 6 for conditional Pix2Pix, 3 for CycleGAN."""

    arch: str = "basic"
    input_nc: int = 6
    ndf: int = 64
    n_layers: int = 3
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.arch not in DISCRIMINATOR_ARCHS:
            raise ValueError(f"discriminator arch {self.arch!r} is not one of {DISCRIMINATOR_ARCHS}")
        if self.norm not in NORM_TYPES:
            raise ValueError(f"norm {self.norm!r} is not one of {NORM_TYPES}")
        if self.ndf < 1 or self.n_layers < 1:
            raise ValueError("ndf and n_layers must be positive")


def unet_depth(image_size: int) -> int:
    """Levels that bring ``image_size`` (a power of two, >= 32) down to 1x1."""
    depth = int(round(math.log2(image_size))) if image_size > 0 else 0
    if 2**depth != image_size or depth < 5:
        raise ValueError(f"unet_auto needs a power-of-two image size >= 32, got {image_size}")
    return depth


def init_weights(net: nn.Module, gain: float = 0.02, seed: int | None = None) -> nn.Module:
    """Reference 'normal' init: conv weights N(0, gain), norm weights N(1, gain), biases 0.

    The draws come from a CPU generator and are copied to wherever ``net`` lives, so a seed
    gives the same weights on any device (a CUDA tensor cannot draw from a CPU generator)."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def normal(param: torch.Tensor, mean: float) -> None:
        draws = torch.empty(param.shape, dtype=param.dtype).normal_(mean, gain, generator=generator)
        param.copy_(draws)

    def init(m: nn.Module) -> None:
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            with torch.no_grad():
                normal(m.weight, 0.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
        elif "BatchNorm2d" in name and m.weight is not None:
            with torch.no_grad():
                normal(m.weight, 1.0)
                m.bias.zero_()

    net.apply(init)
    return net


def reinitialize(net: nn.Module, seed: int) -> nn.Module:
    """Fresh weights (:func:`init_weights`, seeded) and fresh BatchNorm statistics: the network
    as if built untrained at its (possibly pruned) width."""
    init_weights(net, seed=seed)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    return net


def build_generator(config: GeneratorConfig, seed: int | None = None) -> nn.Module:
    """Construct and initialise the generator described by ``config``."""
    norm_layer = get_norm_layer(config.norm)
    common = dict(ngf=config.ngf, norm_layer=norm_layer, use_dropout=config.use_dropout)
    if config.arch.startswith("resnet"):
        n_blocks = 9 if config.arch == "resnet_9blocks" else 6
        net = ResnetGenerator(config.input_nc, config.output_nc, n_blocks=n_blocks, **common)
    elif config.separable:
        if config.use_dropout:
            raise ValueError("the separable U-Net has no dropout; set use_dropout: false")
        net = separable_unet(config.input_nc, config.output_nc, unet_levels(config), config.ngf,
                             norm_layer)
    else:
        net = UnetGenerator(config.input_nc, config.output_nc, unet_levels(config), **common)
    return init_weights(net, seed=seed)


def unet_levels(config: GeneratorConfig) -> int:
    """Down-sampling levels of a U-Net ``config`` (8 for ``unet_256``, 7 for ``unet_128``)."""
    if not config.arch.startswith("unet"):
        raise ValueError(f"generator arch {config.arch!r} is not a U-Net")
    return {"unet_256": 8, "unet_128": 7}.get(config.arch) or unet_depth(config.image_size)


def build_discriminator(config: DiscriminatorConfig, seed: int | None = None) -> nn.Module:
    """Construct and initialise the PatchGAN described by ``config``."""
    n_layers = 3 if config.arch == "basic" else config.n_layers
    net = NLayerDiscriminator(
        config.input_nc, config.ndf, n_layers=n_layers, norm_layer=get_norm_layer(config.norm)
    )
    return init_weights(net, seed=seed)
