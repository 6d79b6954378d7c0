"""Pruning environments: the two-agent game, its Parallel API and its Gymnasium views."""

from gan_prune_env.envs.actions import ActionError, action_to_ratios, ratios_to_action
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs.game import AGENTS, PruningGame, RoundResult
from gan_prune_env.envs.parallel import EvaluationError, GANPruneParallelEnv
from gan_prune_env.envs.peers import ConstantPeer, PredictPeer, resolve_peer
from gan_prune_env.envs.preparation import check_task_inputs
from gan_prune_env.envs.registration import ENV_IDS, make_parallel_env, make_prune_env
from gan_prune_env.envs.views import JointPruneEnv, SingleAgentPruneEnv

__all__ = [
    "AGENTS", "ENV_IDS", "ActionError", "ConstantPeer", "EnvConfig", "EvaluationError",
    "GANPruneParallelEnv", "JointPruneEnv", "PredictPeer", "PruningGame", "RoundResult",
    "SingleAgentPruneEnv", "action_to_ratios", "check_task_inputs", "make_parallel_env",
    "make_prune_env", "ratios_to_action", "resolve_peer",
]
