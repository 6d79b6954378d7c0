"""Pix2Pix/CycleGAN networks with the reference implementation's module names."""

from gan_prune_env.models.factory import (
    DISCRIMINATOR_ARCHS,
    GENERATOR_ARCHS,
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
    init_weights,
    reinitialize,
    unet_depth,
    unet_levels,
)
from gan_prune_env.models.patchgan import NLayerDiscriminator
from gan_prune_env.models.resnet import ResnetBlock, ResnetGenerator
from gan_prune_env.models.separable import (
    SeparableConv2d,
    SeparableConvTranspose2d,
    factorise,
    factorised_unet,
    separable_unet,
)
from gan_prune_env.models.unet import UnetGenerator, UnetSkipConnectionBlock

__all__ = [
    "DISCRIMINATOR_ARCHS", "GENERATOR_ARCHS", "DiscriminatorConfig", "GeneratorConfig",
    "NLayerDiscriminator", "ResnetBlock", "ResnetGenerator", "SeparableConv2d",
    "SeparableConvTranspose2d", "UnetGenerator",
    "UnetSkipConnectionBlock", "build_discriminator", "build_generator", "factorise",
    "factorised_unet", "init_weights",
    "reinitialize", "separable_unet", "unet_depth", "unet_levels",
]
