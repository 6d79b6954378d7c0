"""The two-agent environment in PettingZoo's Parallel API.

Agents ``generator`` (genG) and ``discriminator`` (genD) act simultaneously each round.

* Action space (per agent): ``Box(-1, 1, (n_groups,), float32)``; entry g is the keep ratio of
  channel group g mapped linearly to ``[min_keep, 1]``. Out-of-box values are clipped (reported
  in ``info["clipped_entries"]``); NaN/inf or a wrong shape raise ``ActionError``.
* Observation space (per agent): see ``gan_prune_env.envs.observations``.
* Reward: METHOD 8, Python floats; every term is in ``info["reward_terms"]``.
* Episode: ``rounds`` rounds, then ``terminated`` is True for both agents; never truncated.
  A round whose evaluation fails ends it early (``on_error``, ``info["error"]``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from gan_prune_env.config import from_dict
from gan_prune_env.envs.actions import action_to_ratios, validate_action
from gan_prune_env.envs.config import EnvConfig
from gan_prune_env.envs.game import AGENTS, PruningGame, RoundResult
from gan_prune_env.envs.observations import ObservationBuilder
from gan_prune_env.envs.rendering import ansi_summary, image_grid

RENDER_MODES = ("ansi", "rgb_array")
LOSS_TERMS = {"generator": ("g_loss", "g_adv", "g_kde", "g_rec"),
              "discriminator": ("d_loss", "d_real", "d_fake")}


class EvaluationError(RuntimeError):
    """A round's evaluation failed (see ``EnvConfig.on_error``)."""


def check_shareable(config: EnvConfig) -> None:
    """Episodes may share one game (networks, pools, cache) only with frozen weights: then a
    round's outcome depends on its pair alone, not on the other episodes' rounds."""
    if config.inner_steps:
        raise ValueError(f"episodes cannot share a game with inner_steps={config.inner_steps} "
                         "(inner updates change the shared weights): use inner_steps=0, or "
                         "one env per episode (gymnasium.make_vec(..., "
                         "vectorization_mode='sync'))")


class GANPruneParallelEnv(ParallelEnv):
    """genG and genD prune a pretrained GAN together, seeing each other's feedback.

    ## Description
    Two agents share a pretrained Pix2Pix or CycleGAN pair (the *teacher*): ``generator``
    (genG) chooses how many channels of each channel group of G to keep, ``discriminator``
    (genD) the same for D. Each round both submit an action at once; the game masks both
    networks, re-estimates the pruned G's BatchNorm statistics, and pays both by the
    local-density objective on fixed neighbourhoods of the teacher's outputs (METHOD 5-8 in
    ``docs/METHOD.md``). Channel groups are found by Torch-Pruning's dependency graph, so the
    number of groups depends on the network (the default task: 11 for G, 4 for D).

    ## Action space
    Per agent ``Box(-1, 1, (n_groups,), float32)``; entry g is channel group g's keep ratio,
    mapped linearly to ``[min_keep, 1]`` and rounded to channel counts (multiples of
    ``divisor``). Out-of-box values are clipped and listed in ``info["clipped_entries"]``;
    NaN/inf or a wrong shape raise ``ActionError``.

    ## Observation space
    Per agent a flat float32 ``Box`` with finite bounds (``observation_layout(agent)`` names the
    slices):

    | block | size | bounds |
    |---|---|---|
    | static group features (kind, sizes, kernel, stride, depth, MACs/params shares) | 12 n | [0, 1] |
    | own current keep ratios | n | [0, 1] |
    | own budget, kept-MACs ratio, slack, round / rounds | 4 | [0, 1], [0, 1], [-1, 1], [0, 1] |
    | own last loss terms / reference | 4 | [0, 10] |
    | peer's last keep ratios | n_peer | [0, 1] |
    | peer's last loss terms / reference | 4 | [0, 10] |
    | peer's kept-MACs ratio, budget | 2 | [0, 1] |

    ## Rewards
    ``r_G = -L_G / L_G_ref - lambda_F * max(0, log(r_G / p_G))`` and
    ``r_D = -|L_D - L_D_ref| / L_D_ref - lambda_F * max(0, log(r_D / p_D))``: r is the kept-MACs
    ratio (analytic, the field's MACs convention), p the budget, ``lambda_F`` the
    ``compute_weight`` and the references the unpruned pair's losses (the uniform pair's L_G when
    the objective makes the unpruned one 0, ``info["reference_source"]``). Every term is in
    ``info``:

    | info key | agent | value | range | unpruned pair (defaults) |
    |---|---|---|---|---|
    | ``reward_terms["loss"]`` | G | ``-L_G / L_G_ref`` | (-inf, 0] | -1 |
    | ``reward_terms["compute"]`` | G | ``-lambda_F * max(0, log(r_G / p_G))`` | [-lambda_F log(1/p_G), 0] | -2.77 (p_G 0.25) |
    | ``reward_terms["loss"]`` | D | ``-abs(L_D - L_D_ref) / L_D_ref`` | (-inf, 0] | 0 |
    | ``reward_terms["compute"]`` | D | ``-lambda_F * max(0, log(r_D / p_D))`` | [-lambda_F log(1/p_D), 0] | -1.39 (p_D 0.5) |
    | ``loss_terms`` | G: ``g_loss, g_adv, g_kde, g_rec``; D: ``d_loss, d_real, d_fake`` | the objective's terms this round | [0, inf) | ``reference_terms`` |
    | ``compute_ratio`` / ``budget`` | each | kept MACs / full MACs; p | (0, 1] | 1 / p |
    | ``cache_hit`` / ``cache_hit_rate`` | each | whether this round's pair came from the cache of evaluated pairs; the share of this env's lookups it answered | bool; [0, 1] | — |

    With ``info_format="numeric"`` every info is flat, with the same keys at ``reset`` and every
    ``step`` (numbers and arrays of fixed shape, for tensor-based libraries such as TorchRL):
    ``round``, ``reward_loss``, ``reward_compute``, the agent's loss terms, ``compute_ratio``,
    ``budget``, ``within_budget``, ``kept_channels`` and ``keep_ratios`` (n_groups each),
    ``clipped`` (n_groups booleans), ``cache_hit``, ``cache_hit_rate`` and ``failed`` (the
    cause is ``env.last_error``); at ``reset`` they describe the unpruned pair.

    The reward is the sum of the two terms. Deterministic: the same ``seed`` and actions give
    the same observations, rewards and infos (on CPU); with frozen weights (``inner_steps`` 0)
    a pair's reward does not depend on the episode's history, which
    ``python -m agents.run.validate`` relies on.

    ## Starting state
    ``reset`` restores the starting weights (the teacher's, or with ``supernet`` the
    supernet's) and the full architecture; the observation shows keep ratios 1. A seeded reset
    also empties the cache of evaluated pairs (``cache_size``), so the same seed and actions
    give the same infos; an unseeded one keeps it.

    ## Episode end
    Terminated after ``rounds`` rounds (default 4); never truncated. A round whose evaluation
    fails (non-finite losses or rewards, out of memory, a runtime error in the game) also
    terminates it, for both agents, with reward ``error_reward`` (default -10) and the cause in
    ``info["error"]`` (empty in every other step and at reset); ``on_error="raise"`` raises
    :class:`EvaluationError` instead. Bad actions raise ``ActionError`` either way.

    ## Arguments
    Every :class:`~gan_prune_env.envs.config.EnvConfig` field, strictly (a misspelt keyword is
    an error): the task and its files (``task``, ``dataset``, ``teacher``, ``supernet``,
    ``resolution``), budgets and reward (``budget_g``, ``budget_d``, ``compute_weight``,
    ``compute_penalty``), the episode (``rounds``, ``inner_steps``, ``inner_batch``,
    ``inner_lr``), the objective's pools (``pool_size``, ``eval_size``, ``k``, ``objective``),
    scoring (``recalibrate_norms``, ``calibration_size``, ``evaluation``: masked or sliced to
    the kept channels, ``cache_size``, ``precision``: float32 or bfloat16), the action mapping
    (``min_keep``, ``divisor``, ``importance``), faults (``on_error``, ``error_reward``),
    ``device`` and ``seed``; plus ``render_mode`` (``ansi``, ``rgb_array``).
    ``gymnasium.make_vec(id, num_envs)`` runs ``num_envs`` episodes of a view over one shared
    game (frozen weights only).

    ## Version history
    * v0: initial release. Opt-in options added since (``supernet``) leave the default
      behaviour, and so v0's results, unchanged. Input checks tightened since: boolean, complex
      and string actions, actions for unknown agents, non-finite options, a negative ``seed``
      or ``inner_lr`` and an unusable ``device`` are errors; a ``divisor`` at least as wide as
      some channel group warns. Valid inputs behave as before. A failed round ends the
      episode (``on_error="end"``, the new default) where it used to raise out of ``step``.
      Added since, leaving the default behaviour and rewards unchanged: scoring sliced to the
      kept channels (``evaluation="sliced"``; rewards within 3e-7 of the masked ones over 60
      random pairs of the default task), the cache of evaluated pairs (``cache_size``; infos
      ``cache_hit`` and ``cache_hit_rate``: a cached pair pays exactly what it paid), the
      vector entry point and ``info_format="numeric"``. Scoring with channels-last weights
      and D's kept verdicts on the real pairs (for speed) changed rewards by float rounding
      only: at most 2.9e-6 (1.3e-6 relative) over 60 random joint-view rounds of the default
      task. Added since, opt-in: bfloat16 scoring (``precision="bfloat16"``; float32 stays
      the default and the reference). The density term's features computed in two float32
      passes (for speed) changed rewards by float rounding only: at most 5.3e-7 (4.7e-7
      relative) over 60 random joint-view rounds of the default task. Added since, opt-in: a
      supernet file holding a critic supernet gives D its weights too (files without one
      score as before). The ranking of the reward variants (which terms, which weights) is
      measured in ``docs/RESULTS.md``: with a supernet, ``objective={"lambda_adv": 0,
      "lambda_rec": 0}`` (the density term alone) ranks architectures as fine-tuning does.
    * ``Pix2PixPruneDensity-v0``: a preset of this env (as CompilerGym registers one id per
      reward), not a new version of it: ``supernet="shipped"`` (the default task's L1 supernet,
      ``assets/default_supernet.pt``, the file the measurements used), ``objective={"lambda_adv":
      0, "lambda_rec": 0}`` and ``budget_g=0.1``. genG's loss term is ``-KL / KL_ref`` of the
      supernet's sub-network; at 10% it ranks 31 architectures' final FID at Spearman +0.77
      [+0.54, +0.89], ``Pix2PixPrune-v0``'s at -0.09. Every other option and genD's reward are
      v0's.
    """

    metadata = {"render_modes": list(RENDER_MODES), "name": "gan_prune_v0",
                "is_parallelizable": True}

    def __init__(self, config: EnvConfig | dict | None = None, render_mode: str | None = None,
                 game: PruningGame | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode {render_mode!r} is not one of {RENDER_MODES}")
        if game is not None:
            if config is not None or kwargs:
                raise TypeError("a shared game brings its own config: pass no other options")
            config = game.config  # shared by several envs: see check_shareable
        elif config is None or isinstance(config, dict):
            config = from_dict(EnvConfig, {**(config or {}), **kwargs}, where="env kwargs")
        elif kwargs:
            raise TypeError(f"pass either an EnvConfig or keyword options, not both: {kwargs}")
        self.config = config
        self.render_mode = render_mode
        self.game = PruningGame(config) if game is None else game
        self.possible_agents = list(AGENTS)
        self.agents: list[str] = []
        self._builders = {a: ObservationBuilder(self.game, a) for a in AGENTS}
        self._action_spaces = {a: spaces.Box(-1.0, 1.0, (self.game.num_groups(a),), np.float32)
                               for a in AGENTS}
        self.state_space = spaces.Box(
            np.concatenate([self._builders[a].space.low for a in AGENTS]),
            np.concatenate([self._builders[a].space.high for a in AGENTS]), dtype=np.float32)
        self._round = 0
        self._last: RoundResult | None = None
        self._observations: dict[str, np.ndarray] = {}
        self._numeric: dict[str, dict[str, Any]] = {}
        self.last_error = ""  # the cause of the last failed round (also in rich infos)

    # -- spaces ---------------------------------------------------------------------------------
    # The same object on every call, as PettingZoo requires. (Not ``functools.lru_cache`` on the
    # method: its class-level cache would keep every env, networks included, alive forever.)
    def observation_space(self, agent: str) -> spaces.Box:
        return self._builders[agent].space

    def action_space(self, agent: str) -> spaces.Box:
        return self._action_spaces[agent]

    def observation_layout(self, agent: str) -> dict[str, slice]:
        """Named slices of ``agent``'s flat observation (see ``observations``)."""
        return dict(self._builders[agent].layout)

    # -- API -------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        return self._reset(seed, options, clear_cache=seed is not None)

    def _reset(self, seed: int | None, options: dict | None, clear_cache: bool
               ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """``reset``; a reset the user seeded also empties the cache of evaluated pairs, so the
        same seed and actions give the same infos (the views re-seed every episode themselves
        and clear it only when their own caller seeded)."""
        if clear_cache:
            self.game.clear_cache()
        self.game.restore_pretrained(seed)
        self.agents = list(self.possible_agents)
        self._round = 0
        self._last = None
        self.last_error = ""
        full = {a: np.ones(self.game.num_groups(a), dtype=np.float32) for a in AGENTS}
        compute = {a: 1.0 for a in AGENTS}
        self._observations = self._observe(full, compute, self.game.reference_terms)
        if self.config.info_format == "numeric":
            self._numeric = {a: self._numeric_info(a, None, []) for a in AGENTS}
            return dict(self._observations), {a: dict(self._numeric[a]) for a in AGENTS}
        infos = {a: {"round": 0, "compute_ratio": 1.0, "budget": self.game.budget(a),
                     "cache_hit_rate": self.game.cache_hit_rate, "error": ""}
                 for a in self.agents}
        return dict(self._observations), infos

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("episode is over: call reset() before step()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"missing action for agent(s) {missing}")
        unknown = sorted(str(a) for a in actions if a not in self.agents)
        if unknown:
            raise ValueError(f"actions for unknown agent(s) {unknown}; the agents are "
                             f"{list(self.agents)}")
        ratios, clipped = {}, {}
        for agent in AGENTS:
            action, clipped[agent] = validate_action(agent, actions[agent],
                                                     self.game.num_groups(agent))
            ratios[agent] = action_to_ratios(action, self.config.min_keep)
        try:
            result = self._play_round(ratios)
        except EvaluationError as err:
            if self.config.on_error == "raise":
                raise
            return self._end_with_error(err)
        self._last = result
        self._round += 1
        done = self._round >= self.config.rounds
        kept = {a: result.ratios[a].astype(np.float32) for a in AGENTS}
        self._observations = self._observe(kept, result.compute_ratio, result.terms)
        if self.config.info_format == "numeric":
            self._numeric = {a: self._numeric_info(a, result, clipped[a]) for a in AGENTS}
            infos = {a: dict(self._numeric[a]) for a in AGENTS}
        else:
            infos = {a: self._info(a, result, clipped[a]) for a in AGENTS}
        rewards = {a: float(result.rewards[a]) for a in AGENTS}
        terminations = {a: done for a in AGENTS}
        truncations = {a: False for a in AGENTS}
        observations = dict(self._observations)
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        return np.concatenate([self._observations[a] for a in AGENTS]) if self._observations \
            else np.zeros(self.state_space.shape, dtype=np.float32)

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return ansi_summary(self.game, self._last, self._round)
        if self.render_mode == "rgb_array":
            return image_grid(self.game)
        return None

    def close(self) -> None:
        pass

    # -- helpers ---------------------------------------------------------------------------------
    def _play_round(self, ratios: dict[str, np.ndarray]) -> RoundResult:
        """The game's round, any failure of it (and any non-finite number it pays) raised as
        EvaluationError naming the round and the cause."""
        where = f"round {self._round + 1}"
        try:
            result = self.game.play_round(ratios)
        except (RuntimeError, FloatingPointError) as err:  # OutOfMemoryError is a RuntimeError
            cause = (str(err).strip().splitlines() or [""])[0]
            raise EvaluationError(f"{where}: the evaluation failed: {type(err).__name__}: "
                                  f"{cause}") from err
        values = {**{f"reward_{a}": r for a, r in result.rewards.items()}, **result.terms}
        bad = sorted(name for name, value in values.items() if not math.isfinite(value))
        if bad:
            raise EvaluationError(f"{where}: non-finite {', '.join(bad)} (a teacher or a pruned "
                                  "network producing NaN/inf?)")
        return result

    def _end_with_error(self, err: EvaluationError):
        """The step that ends an episode whose round failed: observations unchanged."""
        self._round += 1
        self.agents = []
        self.last_error = str(err)
        if self.config.info_format == "numeric":  # the last round's numbers, marked failed
            infos = {a: {**self._numeric[a], "round": self._round, "failed": True,
                         "reward_loss": float(self.config.error_reward),
                         "reward_compute": 0.0, "cache_hit": False} for a in AGENTS}
        else:
            infos = {a: {"round": self._round, "error": self.last_error} for a in AGENTS}
        return (dict(self._observations),
                {a: float(self.config.error_reward) for a in AGENTS},
                {a: True for a in AGENTS}, {a: False for a in AGENTS}, infos)

    def _observe(self, ratios, compute, terms) -> dict[str, np.ndarray]:
        return {a: self._builders[a].build(ratios, compute, terms, self._round) for a in AGENTS}

    def _numeric_info(self, agent: str, result: RoundResult | None, clipped: list[int]
                      ) -> dict[str, Any]:
        """``info_format="numeric"``: the same keys, numbers and fixed-shape arrays in every
        step; before the first round (``result`` None) the unpruned pair's values."""
        groups, budget = self.game.num_groups(agent), self.game.budget(agent)
        counts = self.game.spaces[agent].num_channels if result is None else result.counts[agent]
        terms = self.game.reference_terms if result is None else result.terms
        compute = 1.0 if result is None else result.compute_ratio[agent]
        rewards = {"loss": 0.0, "compute": 0.0} if result is None else result.reward_terms[agent]
        mask = np.zeros(groups, dtype=bool)
        mask[list(clipped)] = True
        return {
            "round": self._round,
            "reward_loss": float(rewards["loss"]),
            "reward_compute": float(rewards["compute"]),
            **{k: float(terms[k]) for k in LOSS_TERMS[agent]},
            "compute_ratio": float(compute),
            "budget": float(budget),
            "within_budget": bool(compute <= budget + 1e-9),
            "kept_channels": np.asarray(counts, dtype=np.int64).copy(),
            "keep_ratios": (np.asarray(counts) / self.game.spaces[agent].num_channels
                            ).astype(np.float32),
            "clipped": mask,
            "cache_hit": bool(result is not None and self.game.last_cache_hit),
            "cache_hit_rate": float(self.game.cache_hit_rate),
            "failed": False,
        }

    def _info(self, agent: str, result: RoundResult, clipped: list[int]) -> dict[str, Any]:
        terms_keys = LOSS_TERMS[agent]
        return {
            "round": self._round,
            "reward_terms": dict(result.reward_terms[agent]),
            "loss_terms": {k: result.terms[k] for k in terms_keys},
            "reference_terms": {k: self.game.reference_terms[k] for k in terms_keys},
            "reference_source": self.game.reference_source,
            "compute_ratio": result.compute_ratio[agent],
            "budget": self.game.budget(agent),
            "within_budget": result.compute_ratio[agent] <= self.game.budget(agent) + 1e-9,
            "kept_channels": result.counts[agent].tolist(),
            "keep_ratios": result.ratios[agent].tolist(),
            "clipped_entries": clipped,
            "cache_hit": self.game.last_cache_hit,
            "cache_hit_rate": self.game.cache_hit_rate,
            "error": "",
        }
