"""Side-by-side benchmarks of s2sgrad against its peers (not part of the test suite).

Each module here is one runnable benchmark; timings are reported as ratios measured in
one process on the same inputs, never asserted in unit tests. The tests import the
problem definitions only to check, at a tiny size, that every tool's gradient agrees.
"""
