"""The sensitivity of a long simulation, in bounded memory: binomial checkpointing.

What this example teaches:

* Reverse mode keeps what each time step's backward step reads. For the viscous
  Burgers equation below (100,000 grid points, 12,000 explicit steps) that is a few
  arrays per step, and the unscheduled backward sweep would need more memory than this
  machine has. The example measures how much: the bytes the unscheduled gradient holds
  per step, on a short run, times the number of steps.
* One comment on the time loop, ``# s2sgrad: checkpoint(snapshots=40)``, makes the
  backward sweep keep at most 40 states and rerun steps from them (the binomial
  schedule of Griewank and Walther, which reruns the fewest steps any schedule with 40
  snapshots can). The gradient of the final energy with respect to the whole initial
  profile and the viscosity then takes well under two minutes and a few dozen states'
  memory. See the schedule in the generated code with::

      s2sgrad inspect examples/long_simulation_checkpointing.py:energy

* How to trust it: central differences along the viscosity and along two random
  directions of the initial profile, each from two more runs of the simulation.

Run it with ``python examples/long_simulation_checkpointing.py``; with ``--small`` (as
the test suite runs it) the grid and the run are small. The exit status is 1 if a check
fails.
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np

import s2sgrad

SNAPSHOTS = 40


def simulate(u, nu, steps, dt, dx):
    """``steps`` explicit steps of u_t + u u_x = nu u_xx on a periodic grid."""
    for _ in range(steps):  # s2sgrad: checkpoint(snapshots=40)
        right, left = np.roll(u, -1), np.roll(u, 1)
        flux = u * (right - left) / (2.0 * dx)
        u = u + dt * (nu * (right - 2.0 * u + left) / dx**2 - flux)
    return u


def energy(u0, nu, steps, dt, dx):
    """The kinetic energy of the final state."""
    u = simulate(u0, nu, steps, dt, dx)
    return 0.5 * dx * np.sum(u**2)


def energy_unscheduled(u0, nu, steps, dt, dx):
    """The same simulation without the checkpoint directive: to measure what it would hold."""
    u = u0
    for _ in range(steps):
        right, left = np.roll(u, -1), np.roll(u, 1)
        flux = u * (right - left) / (2.0 * dx)
        u = u + dt * (nu * (right - 2.0 * u + left) / dx**2 - flux)
    return 0.5 * dx * np.sum(u**2)


def peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(small: bool) -> int:
    n, steps = (2_000, 400) if small else (100_000, 12_000)
    dx = 1.0 / n
    nu = 5e-6 if not small else 2e-4
    x = np.arange(n) * dx
    u0 = 0.5 + 0.3 * np.sin(2 * np.pi * x) + 0.1 * np.cos(6 * np.pi * x)
    # Within the explicit scheme's limits for diffusion and for advection.
    dt = min(0.2 * dx**2 / nu, 0.2 * dx / np.max(np.abs(u0)))
    print(f"Burgers equation, {n:,} grid points, {steps:,} explicit steps")

    # What the unscheduled backward sweep holds, per step: measured on a short run.
    probe = 100
    plain = s2sgrad.grad(energy_unscheduled, wrt=(0, 1))
    per_step = (
        peak_bytes(plain, u0, nu, 2 * probe, dt, dx) - peak_bytes(plain, u0, nu, probe, dt, dx)
    ) / probe
    print(
        f"unscheduled reverse sweep: {per_step / 1e6:.2f} MB per step, "
        f"{per_step * steps / 1e9:.1f} GB for the whole run"
    )

    gradient = s2sgrad.grad(energy, wrt=(0, 1))
    start = time.perf_counter()
    du0, dnu = gradient(u0, nu, steps, dt, dx)
    seconds = time.perf_counter() - start
    state = u0.nbytes
    print(
        f"checkpointed ({SNAPSHOTS} snapshots of {state / 1e6:.1f} MB): gradient in "
        f"{seconds:.1f} s; dE/dnu = {dnu:.6e}, |dE/du0| = {np.linalg.norm(du0):.6e}"
    )

    print("central differences:")
    rng = np.random.default_rng(0)
    ok = True
    checks = [("viscosity", 0.0, 1.0)] + [
        (f"direction {k}", rng.standard_normal(n), 0.0) for k in range(2)
    ]
    for label, v, w in checks:
        eps = 1e-4 if w else 1e-6  # (the viscosity moves the energy little: a wider step)
        plus = energy(u0 + eps * v, nu + eps * w * nu, steps, dt, dx)
        minus = energy(u0 - eps * v, nu - eps * w * nu, steps, dt, dx)
        finite = (plus - minus) / (2 * eps)
        reverse = float(np.sum(du0 * v)) + dnu * w * nu
        error = abs(reverse - finite) / abs(finite)
        passed = error < 1e-6
        ok = ok and passed
        print(
            f"  {label:12s} reverse {reverse: .10e}  finite diff. {finite: .10e}  {'ok' if passed else 'FAIL'}"
        )
    print("gradient check passed" if ok else "gradient check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(small="--small" in sys.argv[1:]))
