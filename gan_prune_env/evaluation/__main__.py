"""``python -m gan_prune_env.evaluation``: see :mod:`gan_prune_env.evaluation.cli`."""

import sys

from gan_prune_env.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
