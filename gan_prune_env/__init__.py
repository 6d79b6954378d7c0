"""gan_prune_env: compress Pix2Pix/CycleGAN generators by channel pruning, as a two-agent RL env."""

__version__ = "0.1.0"
