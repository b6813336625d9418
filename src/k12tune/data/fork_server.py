"""What the data stage's fork server does first, before `warmup` imports numba and loads the
kernels (see `pipeline.FORK_SERVER_PRELOAD`); nothing else imports this. Both save time on the
path of every run, since the workers wait for the fork server to finish loading.

No scipy.linalg. numba, when it starts, imports `scipy.linalg.cython_blas` to find a BLAS for
`np.dot` and its kind, which no kernel of the data stage uses. That import brings in all of
`scipy.linalg` and its OpenBLAS: 0.09 s. With the module entry set to None the import fails at
once, and numba only leaves out those linear-algebra functions. 1M benchmark records on 2
CPUs, runs alternated: 5.04, 5.10, 4.97 s with this against 5.23, 5.20, 5.14 s without. The
catch, and why nothing else imports this: `scipy.linalg` cannot be imported in such a process.

No automatic garbage collection. The imports allocate hundreds of thousands of objects, which
set off full collections that found nothing to free (perf: 0.03 s of the fork server's start).
The workers inherit the setting; they collect after each task (`parallel.WorkerPool`), and
`warmup` ends by freezing what the fork server holds, out of their collections' sight.
"""

from __future__ import annotations

import gc
import sys

sys.modules.setdefault("scipy.linalg.cython_blas", None)  # type: ignore[arg-type]
gc.disable()
