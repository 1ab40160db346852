"""``python -m snnas`` runs the CLI, also under torchrun.

``torchrun --standalone --nproc-per-node N -m snnas train ...`` starts N copies of this
module with ``RANK`` set; the commands that train (``train``, ``finetune``, ``search``) join
them into one data-parallel run (``snnas.train._dist``). Only rank 0 prints: the others run
with ``--quiet`` and their standard output discarded (errors still reach standard error).

A rank that joined a process group ends without unwinding the interpreter (its work is
written, atomically, by then): left to the interpreter's teardown, gloo's joinable threads
end it with "terminate called without an active exception" (SIGABRT), which torchrun
reports as a crash (seen in tests/train/test_ddp.py; the runtime's device processes exit the
same way for the same reason).
"""

import os
import sys

from snnas.cli import main


def _run(argv: list[str] | None) -> None:
    try:
        main(argv)
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, (str, int)) or exc.code is None else 1
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        if code is not None and not isinstance(code, int):
            sys.stderr.write(f"{code}\n")
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    sys.exit(code)


if os.environ.get("RANK", "0") != "0" and os.environ.get("WORLD_SIZE", "1") != "1":
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
    _run(["--quiet", *sys.argv[1:]])
else:
    _run(None)
