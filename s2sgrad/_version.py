"""The version of s2sgrad, importable without importing the API.

It lives in its own module because the cache key includes it, and the cache
must be importable on the fast path without pulling in the compiler.
"""

__version__ = "0.1.0"
