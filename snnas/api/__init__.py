"""The Python API (``docs/api.md``): the whole pipeline from a notebook.

``snnas.search`` -> :class:`SearchRun`; ``snnas.finetune`` -> :class:`FinetuneResult`;
``snnas.export`` -> :class:`Plan`; :meth:`Plan.forward`, :meth:`Plan.verify`,
:meth:`Plan.run_local`; ``snnas.cost``. The ``*Job`` classes are the same steps split in
two (check everything, then run), for the CLI, which says what it starts in between.
Nothing here prints unless asked (``progress=`` or ``verbose=True``).
"""

from snnas.api._cost import Cost, cost
from snnas.api._export import ExportJob, export
from snnas.api._finetune import FinetuneJob, FinetuneResult, finetune
from snnas.api._plan import Plan, RuntimeResult, VerifyResult
from snnas.api._search import SearchJob, SearchRun, search

__all__ = [
    "Cost",
    "ExportJob",
    "FinetuneJob",
    "FinetuneResult",
    "Plan",
    "RuntimeResult",
    "SearchJob",
    "SearchRun",
    "VerifyResult",
    "cost",
    "export",
    "finetune",
    "search",
]
