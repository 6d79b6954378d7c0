"""Search, slice, fine-tune, evaluate and export a pruned GAN: ``python train_agents.py --help``."""

from agents.run.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
