"""snnas: search, train and deploy communication policies for split Sep-ResNeXt networks."""

__version__ = "0.1.0"

from snnas.errors import SnnasError
from snnas.space import SearchSpace, load_space

__all__ = ["SearchSpace", "SnnasError", "__version__", "load_space"]
