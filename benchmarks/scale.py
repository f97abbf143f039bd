"""`accelerate launch benchmarks/scale.py [options]`: the sweep runner (genrec.scaling.runner).

Every option is `genrec sweep`'s (`genrec sweep --help`); with no arguments it runs the quickstart
(configs/sweeps/quickstart.yaml) into runs/quickstart.csv. Launched with N processes, each process is
an independent worker that runs every N-th point.
"""
from __future__ import annotations

import sys

from genrec.scaling.runner import isolate_rank

isolate_rank()  # before anything imports torch: one launched process = one worker on its own GPU

from genrec.scaling.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="scale.py"))
