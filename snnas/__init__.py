"""snnas: search, train and deploy communication policies for split Sep-ResNeXt networks.

The notebook pipeline (``docs/api.md``)::

    import snnas

    space = snnas.load_space("search_spaces/quickstart.toml")
    run = snnas.search(space, name="demo", overrides={"search.iterations": 1})
    tuned = snnas.finetune(run, epochs=1)
    plan = snnas.export(tuned, out="demo-plan")
    logits = plan.forward(images)  # (N, num_classes)

``import snnas`` stays cheap: torch is imported by the first call that needs it. The names
``snnas.search`` and ``snnas.cost`` are also the packages ``snnas/search/`` and
``snnas/cost/``: those two packages are callable, and calling one is the API function
(:func:`snnas.api.search`, :func:`snnas.api.cost`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"


class _CallablePackage(types.ModuleType):
    """A package of snnas that is also an API function (``snnas.search(...)``)."""

    _api_function = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module("snnas.api"), self._api_function)(*args, **kwargs)


class _SearchPackage(_CallablePackage):
    _api_function = "search"


class _CostPackage(_CallablePackage):
    _api_function = "cost"


_CALLABLE: dict[str, type[_CallablePackage]] = {"search": _SearchPackage, "cost": _CostPackage}


class _Snnas(types.ModuleType):
    """The ``snnas`` package: when the import system attaches ``snnas.search`` or
    ``snnas.cost`` to it, that package becomes callable (see the module docstring)."""

    def __setattr__(self, name: str, value: Any) -> None:
        kind = _CALLABLE.get(name)
        if kind is not None and type(value) is types.ModuleType:
            value.__class__ = kind
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Snnas

from snnas.errors import SnnasError  # noqa: E402  (after the class swap above)
from snnas.space import SearchSpace, load_space  # noqa: E402

#: The API's names, imported on first use (they import torch).
_LAZY = {
    "Cost": "snnas.api",
    "FinetuneResult": "snnas.api",
    "Plan": "snnas.api",
    "SearchRun": "snnas.api",
    "VerifyResult": "snnas.api",
    "export": "snnas.api",
    "finetune": "snnas.api",
}
#: Names that are packages as well as API functions (see the module docstring).
_PACKAGES = {"search": "snnas.search", "cost": "snnas.cost"}

__all__ = [
    "Cost",
    "FinetuneResult",
    "Plan",
    "SearchRun",
    "SearchSpace",
    "SnnasError",
    "VerifyResult",
    "__version__",
    "cost",
    "export",
    "finetune",
    "load_space",
    "search",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _PACKAGES:
        return importlib.import_module(_PACKAGES[name])  # callable: see _Snnas
    raise AttributeError(f"module 'snnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
