"""The paper-style genG / genD agents (METHOD 7; design after the authors' earlier hypernet).

Each agent is a hypernetwork over its network's channel groups: one token per group (fixed,
orthogonal), plus a projection of the group's static features and current keep ratio, plus a
projection of the agent's own state and of its **peer's feedback** (the peer's last keep ratios,
loss terms and compute ratio) added to every token; a bidirectional GRU runs over the groups in
execution order, and a per-group head gives the mean of a Gaussian over that group's action.

With ``fit_budget`` (default, [ours]) each sampled architecture is moved onto its network's
budget by one global multiplier (``agents.budget.fit_to_budget``): the hypernet decides how the
channels are *distributed* over the groups, the projection how many are kept in total. The
policy gradient still uses the raw sample's log-probability; the projection is part of the
dynamics the agent acts through.

Two ways to learn:

* ``reinforce`` (default): policy gradient from the env's rewards with a running baseline;
* ``gates``: relaxed search. The heads' outputs become kept fractions, the fractions soft channel
  gates along the importance ranking, and the agent descends the local-density objective plus
  the resource loss ``log(max(r, p) / p)`` directly through the masked networks; each update is
  then evaluated as a hard architecture in the env, so both modes feed the same tracker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.base import PruningAgent, SearchTracker, load_agent_state, make_config
from agents.budget import fit_to_budget
from gan_prune_env.checkpoint import save_checkpoint
from gan_prune_env.envs import (
    AGENTS, GANPruneParallelEnv, PruningGame, action_to_ratios, ratios_to_action,
)
from gan_prune_env.envs.observations import LOSS_CLIP

MODES = ("reinforce", "gates")


@dataclass
class MGGCConfig:
    """Hyperparameters of the genG/genD agents."""

    mode: str = "reinforce"
    token_dim: int = 64
    hidden: int = 128
    peer_feedback: bool = True  # ablation switch: False zeroes the peer's feedback
    prune_discriminator: bool = True  # False: D stays full (the "prune G alone" ablation)
    fit_budget: bool = True  # project every architecture onto its network's budget
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_rounds: int = 8  # rounds collected per policy-gradient update
    gamma: float = 0.0  # discount over the rounds of an episode
    init_log_std: float = -1.0
    entropy_coef: float = 1e-3
    baseline_momentum: float = 0.9
    gate_temperature: float = 0.5  # relaxed mode: sigmoid width in channels
    gate_batch: int = 4  # relaxed mode: neighbourhoods per gradient step
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")
        if self.batch_rounds < 1 or self.token_dim < 1 or self.hidden < 1:
            raise ValueError("batch_rounds, token_dim and hidden must be positive")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")


class GroupHypernet(nn.Module):
    """Observation of one agent -> Gaussian over per-group actions in [-1, 1]."""

    def __init__(self, layout: dict[str, slice], n_groups: int, cfg: MGGCConfig) -> None:
        super().__init__()
        self.layout, self.n_groups, self.peer_feedback = layout, n_groups, cfg.peer_feedback
        n_features = (layout["group_features"].stop - layout["group_features"].start) // n_groups
        own = _width(layout["own_global"]) + _width(layout["own_losses"])
        peer = _width(layout["peer_ratios"]) + _width(layout["peer_losses"]) + \
            _width(layout["peer_global"])
        tokens = torch.empty(n_groups, cfg.token_dim)
        nn.init.orthogonal_(tokens)
        self.register_buffer("tokens", tokens)
        self.group_proj = nn.Linear(n_features + 1, cfg.token_dim)
        self.own_proj = nn.Linear(own, cfg.token_dim)
        self.peer_proj = nn.Linear(peer, cfg.token_dim)
        self.gru = nn.GRU(cfg.token_dim, cfg.hidden, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.LayerNorm(2 * cfg.hidden), nn.ReLU(),
                                  nn.utils.parametrizations.weight_norm(nn.Linear(2 * cfg.hidden, 1)))
        self.log_std = nn.Parameter(torch.full((n_groups,), cfg.init_log_std))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Mean action ``[B, n_groups]`` in (-1, 1)."""
        lay = self.layout
        groups = obs[:, lay["group_features"]].view(obs.shape[0], self.n_groups, -1)
        per_group = torch.cat([groups, obs[:, lay["ratios"]].unsqueeze(-1)], -1)
        own = torch.cat([obs[:, lay["own_global"]], obs[:, lay["own_losses"]] / LOSS_CLIP], -1)
        peer = torch.cat([obs[:, lay["peer_ratios"]], obs[:, lay["peer_losses"]] / LOSS_CLIP,
                          obs[:, lay["peer_global"]]], -1)
        if not self.peer_feedback:
            peer = torch.zeros_like(peer)
        context = (self.own_proj(own) + self.peer_proj(peer)).unsqueeze(1)
        tokens = self.tokens.unsqueeze(0) + self.group_proj(per_group) + context
        hidden, _ = self.gru(tokens)
        return torch.tanh(self.head(hidden).squeeze(-1))

    def set_initial_action(self, action: np.ndarray) -> None:
        """Bias the heads so the untrained policy starts at ``action`` (e.g. the uniform
        architecture that meets the budget) instead of an arbitrary point."""
        target = torch.as_tensor(np.clip(action, -0.95, 0.95), dtype=torch.float32)
        linear = self.head[-1]
        with torch.no_grad():
            linear.bias.fill_(float(torch.atanh(target).mean()))
            # A small weight-norm gain: outputs start near the bias, gradients still flow.
            linear.parametrizations.weight.original0.fill_(1e-2)


def _width(s: slice) -> int:
    return s.stop - s.start


class MGGCAgent(PruningAgent):
    """genG and genD: one ``GroupHypernet`` per network, trained from rewards or gates."""

    name = "mggc"

    def __init__(self, config: MGGCConfig | dict | None = None, **kwargs: Any) -> None:
        self.config = make_config(MGGCConfig, config, kwargs, "mggc params")
        self.nets: dict[str, GroupHypernet] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.baselines = {a: 0.0 for a in AGENTS}
        self.updates = 0
        self.rng = torch.Generator().manual_seed(self.config.seed)
        self._game: PruningGame | None = None

    # -- construction ------------------------------------------------------------------------------
    def bind(self, env: GANPruneParallelEnv) -> None:
        """Build the hypernets for ``env``'s groups (idempotent)."""
        self._game = env.game
        if self.nets:
            return
        torch.manual_seed(self.config.seed)
        for agent in self.learning_agents:
            net = GroupHypernet(env.observation_layout(agent), env.game.num_groups(agent),
                                self.config)
            ratio = env.game.uniform_ratio_for_budget(agent)
            net.set_initial_action(ratios_to_action(np.full(1, ratio), env.config.min_keep))
            self.nets[agent] = net
            self.optimizers[agent] = torch.optim.AdamW(
                net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self._full_actions = {a: np.ones(env.game.num_groups(a), dtype=np.float32) for a in AGENTS}

    @property
    def learning_agents(self) -> tuple[str, ...]:
        return AGENTS if self.config.prune_discriminator else ("generator",)

    # -- acting -----------------------------------------------------------------------------------
    def _distribution(self, agent: str, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.nets[agent]
        mean = net(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0]
        return mean, net.log_std.exp()

    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False
            ) -> dict[str, np.ndarray]:
        return self.to_env_actions(self._sample(observations, deterministic))

    def _sample(self, observations: dict[str, np.ndarray], deterministic: bool
                ) -> dict[str, np.ndarray]:
        """Raw policy actions (the Gaussian sample, or its mean), before any projection."""
        actions = {}
        with torch.no_grad():
            for agent in AGENTS:
                if agent not in self.nets:
                    actions[agent] = self._full_actions[agent]
                    continue
                mean, std = self._distribution(agent, observations[agent])
                sample = mean if deterministic else \
                    mean + std * torch.randn(mean.shape, generator=self.rng)
                actions[agent] = sample.clamp(-1, 1).numpy().astype(np.float32)
        return actions

    def to_env_actions(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the env receives: the raw actions, projected onto the budgets with
        ``fit_budget`` (a full D of the G-alone ablation stays full)."""
        if not self.config.fit_budget or self._game is None:
            return raw
        min_keep = self._game.config.min_keep
        return {a: fit_to_budget(self._game, a, action_to_ratios(np.asarray(raw[a], np.float64),
                                                                  min_keep))
                if a in self.nets else raw[a] for a in AGENTS}

    # -- learning ---------------------------------------------------------------------------------
    def learn(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        self.bind(env)
        if self.config.mode == "gates":
            self._learn_gates(env, rounds, tracker)
        else:
            self._learn_reinforce(env, rounds, tracker)

    def _learn_reinforce(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker
                         ) -> None:
        observations, _ = env.reset(seed=self.config.seed + self.updates)
        done_rounds = 0
        while done_rounds < rounds:
            batch = {a: {"obs": [], "act": [], "rew": [], "done": []} for a in self.learning_agents}
            for _ in range(min(self.config.batch_rounds, rounds - done_rounds)):
                actions = self._sample(observations, deterministic=False)
                next_obs, rewards, terminations, _, infos = env.step(self.to_env_actions(actions))
                tracker.record(infos, rewards)
                done = all(terminations.values())
                for agent in self.learning_agents:
                    for key, value in (("obs", observations[agent]), ("act", actions[agent]),
                                       ("rew", rewards[agent]), ("done", done)):
                        batch[agent][key].append(value)
                observations = env.reset()[0] if done else next_obs
                done_rounds += 1
            self._policy_gradient_step(batch)

    def _policy_gradient_step(self, batch: dict[str, dict[str, list]]) -> None:
        cfg = self.config
        for agent, data in batch.items():
            returns = torch.as_tensor(_discounted(data["rew"], data["done"], cfg.gamma),
                                      dtype=torch.float32)
            advantage = returns - self.baselines[agent]
            if advantage.numel() > 1:
                advantage = advantage / (advantage.std() + 1e-6)
            net = self.nets[agent]
            obs = torch.as_tensor(np.stack(data["obs"]), dtype=torch.float32)
            act = torch.as_tensor(np.stack(data["act"]), dtype=torch.float32)
            mean, log_std = net(obs), net.log_std
            dist = torch.distributions.Normal(mean, log_std.exp())
            log_prob = dist.log_prob(act).sum(-1)
            loss = -(advantage * log_prob).mean() - cfg.entropy_coef * dist.entropy().sum(-1).mean()
            self.optimizers[agent].zero_grad(set_to_none=True)
            loss.backward()
            self.optimizers[agent].step()
            m = cfg.baseline_momentum
            self.baselines[agent] = m * self.baselines[agent] + (1 - m) * float(returns.mean())
            self._log(f"agent/{agent}/pg_loss", loss.item())
            self._log(f"agent/{agent}/mean_return", float(returns.mean()))
        self.updates += 1

    def _learn_gates(self, env: GANPruneParallelEnv, rounds: int, tracker: SearchTracker) -> None:
        """Relaxed search: gradient steps on the objective through soft gates, each followed by
        one env round with the resulting hard architecture."""
        game, cfg = env.game, self.config
        observations, _ = env.reset(seed=cfg.seed + self.updates)
        pool = game.train_pool
        for _ in range(rounds):
            centers = torch.randperm(len(pool), generator=self.rng)[: cfg.gate_batch]
            batch = pool.batch(centers)
            fractions = {a: self._fractions(a, observations[a], env) for a in self.learning_agents}
            losses = self._relaxed_losses(game, batch, fractions)
            for agent, loss in losses.items():  # each agent follows its own loss only
                params = list(self.nets[agent].parameters())
                grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
                for param, grad in zip(params, grads):
                    param.grad = grad
            for agent in losses:
                self.optimizers[agent].step()
                self._log(f"agent/{agent}/relaxed_loss", losses[agent].item())
            self.updates += 1
            next_obs, rewards, terminations, _, infos = env.step(self.act(observations, True))
            tracker.record(infos, rewards)
            observations = env.reset()[0] if all(terminations.values()) else next_obs

    def _fractions(self, agent: str, obs: np.ndarray, env: GANPruneParallelEnv) -> torch.Tensor:
        mean = self.nets[agent](torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0]
        min_keep = env.config.min_keep
        return min_keep + (mean + 1) * 0.5 * (1 - min_keep)

    def _relaxed_losses(self, game, batch, fractions: dict[str, torch.Tensor]
                        ) -> dict[str, torch.Tensor]:
        """Objective terms under soft gates, plus ``log(max(r, p) / p)`` resource losses."""
        cfg_env = game.config
        with game.soft_gates(fractions, self.config.gate_temperature):
            game.generator.eval()
            game.discriminator.eval()
            student = game.generator(batch.inputs)
            ref = game.reference_terms
            g_loss, _ = game.objective.generator_loss(game.discriminator, batch, student)
            losses = {"generator": g_loss / ref["g_loss"]}
            if "discriminator" in fractions:
                d_loss, _ = game.objective.discriminator_loss(game.discriminator, batch, student)
                losses["discriminator"] = (d_loss - ref["d_loss"]).abs() / ref["d_loss"]
        for agent in losses:
            budget = cfg_env.budget_g if agent == "generator" else cfg_env.budget_d
            ratio = game.spaces[agent].soft_macs_ratio(fractions[agent])
            losses[agent] = losses[agent] + cfg_env.compute_weight * torch.log(
                torch.clamp(ratio, min=budget) / budget)
        return losses

    def _log(self, name: str, value: float) -> None:
        if self.logger is not None:
            self.logger(name, value, self.updates)

    # -- persistence ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "nets": {a: n.state_dict() for a, n in self.nets.items()},
            "optimizers": {a: o.state_dict() for a, o in self.optimizers.items()},
            "baselines": dict(self.baselines),
            "updates": self.updates,
            "rng": self.rng.get_state(),
        }

    def save(self, path: str | Path) -> None:
        save_checkpoint(path, self.state_dict())

    def load(self, path: str | Path, env: GANPruneParallelEnv | None = None) -> None:
        """Restore a saved agent; ``env`` builds the hypernets if they do not exist yet."""
        state = load_agent_state(path) if not isinstance(path, dict) else path
        if env is not None:
            self.bind(env)
        if set(state["nets"]) != set(self.nets):
            raise ValueError(f"saved agent has hypernets {sorted(state['nets'])}, this one "
                             f"{sorted(self.nets)}: bind() it to the same env first")
        for agent, net in self.nets.items():
            net.load_state_dict(state["nets"][agent])
            self.optimizers[agent].load_state_dict(state["optimizers"][agent])
        self.baselines = dict(state["baselines"])
        self.updates = int(state["updates"])
        self.rng.set_state(state["rng"])


def _discounted(rewards: list[float], dones: list[bool], gamma: float) -> list[float]:
    """Returns-to-go within each episode of a rollout segment."""
    out, running = [0.0] * len(rewards), 0.0
    for i in reversed(range(len(rewards))):
        running = rewards[i] + (0.0 if dones[i] else gamma * running)
        out[i] = running
    return out


__all__ = ["GroupHypernet", "MGGCAgent", "MGGCConfig"]
