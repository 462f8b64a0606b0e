"""One BLAS thread for the test processes.

numpy and scipy each load their own OpenBLAS, each with a thread per core. On this 2-core
machine their idle threads spin while the other library works, so the exact logistic
regressions (``cleaner.models.logreg.fit``: numpy's products in the objective, scipy's L-BFGS-B
between them) ran 20-50x slower than on one thread: 3 fits on 16,608 texture features, 17.7 s
against 0.34 s (bench/_incoming/testtrim2.md). What the tests check is the same on any thread
count. The variable also reaches the ``cleaner`` and Ray processes that tests start."""

from __future__ import annotations

import os

from threadpoolctl import threadpool_limits

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read when a library loads its OpenBLAS
threadpool_limits(1, user_api="blas")  # the pools loaded before this file (numpy, by a plugin)
