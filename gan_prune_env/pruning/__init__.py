"""Channel groups, importance, masking, physical slicing and MACs accounting."""

from gan_prune_env.pruning.gradual import gradual_architectures, relative_indices
from gan_prune_env.pruning.groups import ChannelGroup, channels_for_ratio, discover_groups
from gan_prune_env.pruning.importance import (
    IMPORTANCES, Importance, L1FilterImportance, NormScaleImportance, RandomImportance,
    TorchPruningImportance, make_importance,
)
from gan_prune_env.pruning.layers import LayerInfo, trace_layers
from gan_prune_env.pruning.macs import (
    count_macs, count_params, count_true_macs_profiler, layer_macs, layer_params,
)
from gan_prune_env.pruning.masking import ChannelMasker
from gan_prune_env.pruning.sliced import ArchitectureSlicer, SlicingUnsupported
from gan_prune_env.pruning.slicing import slice_by_indices, slice_model, slice_separable_unet
from gan_prune_env.pruning.space import GROUP_FEATURE_NAMES, ChannelSpace

__all__ = [
    "GROUP_FEATURE_NAMES", "IMPORTANCES", "ArchitectureSlicer", "ChannelGroup", "ChannelMasker",
    "ChannelSpace", "Importance",
    "L1FilterImportance", "LayerInfo", "NormScaleImportance", "RandomImportance",
    "TorchPruningImportance",
    "channels_for_ratio", "count_macs", "count_params", "count_true_macs_profiler",
    "discover_groups", "gradual_architectures", "layer_macs", "layer_params", "make_importance",
    "relative_indices", "SlicingUnsupported",
    "slice_by_indices", "slice_model", "slice_separable_unet", "trace_layers",
]
