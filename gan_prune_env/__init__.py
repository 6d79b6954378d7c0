"""gan_prune_env: compress Pix2Pix/CycleGAN generators by channel pruning, as a two-agent RL env.

Importing the package registers the Gymnasium ids ``Pix2PixPrune-v0``, ``Pix2PixPruneDensity-v0`` (the
shipped supernet's weights and the density term alone: the reward that ranks architectures as
fine-tuning does, at 10% of G's MACs) and ``CycleGANPrune-v0`` (entry points are strings, so
the import stays light until an env is made), each with a vector entry point:
``gymnasium.make_vec(id, num_envs)`` runs that many episodes over one game.
"""

import gymnasium as _gym

__version__ = "0.1.0"

ENV_ENTRY_POINTS = {
    "Pix2PixPrune-v0": "gan_prune_env.envs.registration:make_pix2pix_env",
    "Pix2PixPruneDensity-v0": "gan_prune_env.envs.registration:make_pix2pix_density_env",
    "CycleGANPrune-v0": "gan_prune_env.envs.registration:make_cyclegan_env",
}

VECTOR_ENTRY_POINTS = {
    "Pix2PixPrune-v0": "gan_prune_env.envs.registration:make_pix2pix_vector_env",
    "Pix2PixPruneDensity-v0": "gan_prune_env.envs.registration:make_pix2pix_density_vector_env",
    "CycleGANPrune-v0": "gan_prune_env.envs.registration:make_cyclegan_vector_env",
}

for _env_id, _entry_point in ENV_ENTRY_POINTS.items():
    if _env_id not in _gym.registry:
        _gym.register(id=_env_id, entry_point=_entry_point,
                      vector_entry_point=VECTOR_ENTRY_POINTS[_env_id])
