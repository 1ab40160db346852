"""The network's geometry: blocks, transmission points, the schedule and exact counts.

The code lives in :mod:`snnas.space._arch` (the geometry is part of a search space, and the
space package builds it); this module is its public name.
"""

from snnas.space._arch import Architecture, BlockGeometry, PointGeometry, default_overlap

__all__ = ["Architecture", "BlockGeometry", "PointGeometry", "default_overlap"]
