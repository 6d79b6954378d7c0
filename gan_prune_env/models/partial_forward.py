"""Forward passes run for what a few layers do, cut short after the last of them.

Some passes are run only for a side effect of some layers: adaptive BN reads the norms' fresh
statistics, the feature map phi pools the activations of D's LeakyReLUs. The layers after the
last of those change nothing the caller reads, yet cost as much as any other: a U-Net's outermost
up-convolution, at full resolution, is among its most expensive layers, and the environment
recalibrates a pruned generator every round. Stopping there gives the caller the same values,
bit for bit, for less work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn


class _LastLayerRan(Exception):
    """Raised by the hook of the last layer a cut pass needs; caught by :class:`ForwardCut`."""


def _stop(_module: nn.Module, _args: tuple, _output: object) -> None:
    raise _LastLayerRan


class ForwardCut:
    """Run passes of a network only until the last of ``layers`` has run.

    The first call runs the pass whole and learns which of ``layers`` runs last; every later call
    stops right after that layer's forward (its forward hooks registered before the cut's run
    first, so their side effects happen). A layer that runs more than once in a pass is no cut
    point (its first call is not its last), and neither is a pass in which none of ``layers``
    runs: then every pass runs whole. The order is learned once, so ``layers`` must run in the
    same order in every pass, as in any network without input-dependent control flow.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.layers = list(layers)
        self._learned = False
        self._last: nn.Module | None = None

    @property
    def last(self) -> nn.Module | None:
        """The layer passes stop after (None: they run whole, or nothing is learned yet)."""
        return self._last

    def __call__(self, network_pass: Callable[[], object]) -> None:
        """Run ``network_pass`` (a call of the network) as far as ``layers`` need; its output
        is dropped: what the caller wants are the layers' side effects."""
        if not self._learned:
            self._learn(network_pass)
            return
        if self._last is None:
            network_pass()
            return
        handle = self._last.register_forward_hook(_stop)
        try:
            network_pass()
        except _LastLayerRan:
            pass
        finally:
            handle.remove()

    def _learn(self, network_pass: Callable[[], object]) -> None:
        order: list[nn.Module] = []
        handles = [layer.register_forward_hook(lambda m, _i, _o: order.append(m))
                   for layer in self.layers]
        try:
            network_pass()
        finally:
            for handle in handles:
                handle.remove()
        last = order[-1] if order else None
        self._last = last if last is not None and order.count(last) == 1 else None
        self._learned = True
