"""intdim: the intrinsic dimension of fine-tuning, measured while a language model pretrains.

The core (this package) reparameterises any PyTorch model as theta = theta0 + P(theta_d):

    from intdim import SubspaceConfig, wrap, load_task
    sub = wrap(model, SubspaceConfig(d=200, method="said", seed=0))
"""

from intdim.errors import UserError
from intdim.hadamard import fwht
from intdim.projection import PROJECTIONS, build_projection
from intdim.subspace import SubspaceConfig, SubspaceModel, layer_of, wrap
from intdim.task_file import load_task, save_task

__version__ = "0.2.0"  # 0.2: Fastfood construction fastfood/2 (orthonormal columns)

__all__ = [
    "PROJECTIONS",
    "SubspaceConfig",
    "SubspaceModel",
    "UserError",
    "build_projection",
    "fwht",
    "layer_of",
    "load_task",
    "save_task",
    "wrap",
]
