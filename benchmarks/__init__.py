"""Side-by-side benchmarks of s2sgrad against its peers (not part of the test suite).

Each module here is one runnable benchmark; timings are reported as ratios measured in
one process on the same inputs, never asserted in unit tests. The tests import the
problem definitions only to check, at a tiny size, that every tool's gradient agrees.
"""

import os

# One BLAS thread, set before NumPy loads (``python -m benchmarks ...``): on a 2-core machine
# OpenBLAS's second thread contends with the timing loop, and the same small matrix product
# then takes one time or twice it depending on the process (the MLP gradient's 784-wide
# products: 150 or 350 µs). Every NumPy column (the objective, s2sgrad, its peers, the
# hand-written gradient) runs the same single-threaded BLAS; XLA keeps its own threads.
# Set the variables to measure otherwise; the results' "Machine" line says which was used.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
del _variable
