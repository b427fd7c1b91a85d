"""
The subject model: muscles, their geometry and the skeleton, as one JAX pytree.

Names, the curve family and the integration step are static (they reshape or re-trace the
computation); every number the identifier may change is a leaf.
"""

import dataclasses

from diffmsm_ros.model.muscles import Muscles
from diffmsm_ros.model.skeleton import Skeleton
import jax


@dataclasses.dataclass(frozen=True)
class SubjectModel:
    """A person's musculoskeletal model.  ``timestep`` (s) is the model integration step."""

    muscles: Muscles
    geometry: tuple
    skeleton: Skeleton
    name: str = 'subject'
    timestep: float = 0.002

    @property
    def joint_names(self):
        return self.skeleton.joint_names

    @property
    def muscle_names(self):
        return self.muscles.names

    @property
    def n_joints(self):
        return len(self.skeleton.joint_names)

    @property
    def n_muscles(self):
        return len(self.muscles.names)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    SubjectModel, data_fields=['muscles', 'geometry', 'skeleton'],
    meta_fields=['name', 'timestep'])
