"""``python -m snnas`` runs the CLI, also under torchrun.

``torchrun --standalone --nproc-per-node N -m snnas train ...`` starts N copies of this
module with ``RANK`` set; the commands that train (``train``, ``finetune``, ``search``) join
them into one data-parallel run (``snnas.train._dist``). Only rank 0 prints: the others run
with ``--quiet`` and their standard output discarded (errors still reach standard error).
"""

import os
import sys

from snnas.cli import main

if os.environ.get("RANK", "0") != "0" and os.environ.get("WORLD_SIZE", "1") != "1":
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
    main(["--quiet", *sys.argv[1:]])
else:
    main()
