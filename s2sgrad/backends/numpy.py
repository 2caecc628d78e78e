"""The NumPy backend: generated code as printed, run as it is.

Its runtime is ``s2sgrad.runtime``, the helpers written once against the array
namespace, which every backend shares (see ``backends.rebinding``).
"""

from __future__ import annotations

from s2sgrad.backends.base import RUNTIME_MODULE, Backend

NUMPY = Backend(
    name="numpy",
    array_alias="np",
    array_import="import numpy as np",
    runtime_modules={RUNTIME_MODULE: RUNTIME_MODULE},
)
