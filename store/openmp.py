"""OpenMP's waiting policy for the processes that train (XGBoost) and cluster (scikit-learn).

libgomp's default lets a thread that waits for its partners spin on its core. With the cores
shared (gunicorn workers serving beside a training job, two test processes, a neighbour), a
spinning thread holds the core its partner needs: 5 trainings of 60 rounds took 232 s with 2
threads on the loaded 2-core machine, 4 s with PASSIVE (waiting threads sleep), the same
models. It was faster on a quiet machine too: ``bench/bench_training.py --rows 50000
--products 10`` trained in 13.1 s passive against 16.4 and 16.9 s active (25 s of CPU against
39 and 41). libgomp reads the variable once, when it loads, so this runs before anything
imports xgboost or sklearn (the ``models`` and ``enrichment`` packages' first statement); an
operator's own ``OMP_WAIT_POLICY`` wins.
"""

from __future__ import annotations

import os


def passive_waits() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
