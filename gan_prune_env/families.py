"""The network families (Pix2Pix, CycleGAN): which networks each holds, and how they are built.

Networks per family (``NETWORKS``; the first of each role is the "main" one):

- Pix2Pix: ``generator`` (A -> B), ``discriminator`` (conditional, sees input and output).
- CycleGAN: ``generator_AB``, ``generator_BA``, ``discriminator_B`` (judges domain-B images, i.e.
  ``generator_AB``'s outputs), ``discriminator_A``. In the reference code these are ``netG_A``,
  ``netG_B``, ``netD_A`` and ``netD_B`` respectively (``REFERENCE_NAMES``). ``generator_BA``
  swaps the main generator's ``input_nc``/``output_nc``; ``discriminator_A`` reads ``input_nc``
  channels of domain A.

This is the one registry of network names: checkpoints, teacher training and the reference
importer all read it, and it imports nothing of the project above the models.
"""

from __future__ import annotations

import dataclasses
from typing import Union

from torch import nn

from gan_prune_env.models import (
    DiscriminatorConfig,
    GeneratorConfig,
    build_discriminator,
    build_generator,
)

FAMILIES = ("pix2pix", "cyclegan")
ROLES = ("generator", "discriminator")
NETWORKS: dict[str, dict[str, tuple[str, ...]]] = {
    "pix2pix": {"generator": ("generator",), "discriminator": ("discriminator",)},
    "cyclegan": {
        "generator": ("generator_AB", "generator_BA"),
        "discriminator": ("discriminator_B", "discriminator_A"),
    },
}
REFERENCE_NAMES: dict[str, dict[str, str]] = {
    "pix2pix": {"generator": "G", "discriminator": "D"},
    "cyclegan": {"generator_AB": "G_A", "generator_BA": "G_B",
                 "discriminator_B": "D_A", "discriminator_A": "D_B"},
}
"""Our network name -> the reference code's (its files are ``<epoch>_net_<name>.pth``)."""
NETWORK_CONFIG = Union[GeneratorConfig, DiscriminatorConfig]


def network_names(family: str, role: str | None = None) -> tuple[str, ...]:
    """Names of the networks a ``family`` checkpoint holds (of one ``role`` if given)."""
    if family not in NETWORKS:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")
    roles = NETWORKS[family]
    if role is None:
        return roles["generator"] + roles["discriminator"]
    if role not in roles:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    return roles[role]


def network_role(family: str, name: str) -> str:
    """``"generator"`` or ``"discriminator"`` for a network name of ``family``."""
    for role in ROLES:
        if name in network_names(family, role):
            return role
    raise ValueError(f"{family} has no network {name!r}; it has {network_names(family)}")


def check_family_configs(
    family: str, generator: GeneratorConfig, discriminator: DiscriminatorConfig
) -> None:
    """Raise ValueError when the discriminator's input channels do not fit the family.

    Pix2Pix's conditional discriminator sees input and output concatenated; CycleGAN's sees one
    image of the generator's output domain.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")
    expected = generator.output_nc + (generator.input_nc if family == "pix2pix" else 0)
    if discriminator.input_nc != expected:
        raise ValueError(
            f"a {family} discriminator needs input_nc={expected} for a generator with "
            f"input_nc={generator.input_nc}, output_nc={generator.output_nc}; "
            f"got {discriminator.input_nc}"
        )


def network_config(
    family: str, name: str, generator: GeneratorConfig, discriminator: DiscriminatorConfig
) -> NETWORK_CONFIG:
    """The config of network ``name``, derived from the family's main generator/discriminator."""
    role = network_role(family, name)
    if name == "generator_BA":
        return dataclasses.replace(generator, input_nc=generator.output_nc,
                                   output_nc=generator.input_nc)
    if name == "discriminator_A":
        return dataclasses.replace(discriminator, input_nc=generator.input_nc)
    return generator if role == "generator" else discriminator


def build_network(config: NETWORK_CONFIG, seed: int | None = None) -> nn.Module:
    """A freshly initialised generator or discriminator for ``config``."""
    if isinstance(config, GeneratorConfig):
        return build_generator(config, seed=seed)
    return build_discriminator(config, seed=seed)


__all__ = [
    "FAMILIES", "NETWORKS", "NETWORK_CONFIG", "REFERENCE_NAMES", "ROLES", "build_network",
    "check_family_configs", "network_config", "network_names", "network_role",
]
