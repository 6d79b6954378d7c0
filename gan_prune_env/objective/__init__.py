"""The MGGC local-density objective: teacher-manifold neighbourhoods, KDE and adversarial terms."""

from gan_prune_env.objective.conditioning import pair_input, widen_for_center
from gan_prune_env.objective.features import (
    DiscriminatorFeatures, PixelFeatures, StandardisedFeatures,
)
from gan_prune_env.objective.local_density import (
    DensityTerm, LocalDensityObjective, NeighbourhoodBatch, ObjectiveConfig, TeacherPool,
    build_objective, make_feature_map,
)
from gan_prune_env.objective.neighbourhoods import (
    Neighbourhoods, build_neighbourhoods, kernel_weights,
)

__all__ = [
    "DensityTerm", "DiscriminatorFeatures", "LocalDensityObjective", "NeighbourhoodBatch",
    "Neighbourhoods", "ObjectiveConfig", "PixelFeatures", "StandardisedFeatures", "TeacherPool",
    "build_neighbourhoods", "build_objective", "kernel_weights", "make_feature_map", "pair_input",
    "widen_for_center",
]
