"""Pretraining objectives: a registry of classes that turn blocks into batches and batches into a
summed loss. Adding one is one file here plus its `@OBJECTIVES.register("name")` line and an import
below (see docs/pretrain.md).

Every objective builds its corruption from a generator seeded by (seed, epoch, block index), as
fairseq does, so a block is masked the same way whatever the number of processes or the batch it
lands in, and a resumed run sees exactly the masks the uninterrupted run saw.
"""

from pretrain.objectives.base import OBJECTIVES, Batch, Objective, build_objective

# Importing the modules registers the objectives.
from pretrain.objectives import mlm, span  # noqa: E402, F401  isort: skip

__all__ = ["OBJECTIVES", "Batch", "Objective", "build_objective"]
