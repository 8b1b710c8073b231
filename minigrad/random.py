"""Random numbers that experiments can reproduce.

`manual_seed(s)` reseeds the default generator; a `Generator(seed)` can be passed to any factory
(`randn(..., generator=g)`) so one experiment's draws do not depend on another's.
"""
from minigrad import backend


class Generator:
    """A seeded source of random arrays on one device (NumPy's or CuPy's default_rng)."""

    def __init__(self, seed=0, device="cpu"):
        self.device = device
        self.manual_seed(seed)

    def manual_seed(self, seed):
        self.seed = seed
        self.rng = backend.module_for_device(self.device).random.default_rng(seed)
        return self

    def normal(self, shape, dtype):
        return self.rng.standard_normal(shape, dtype=backend.float64).astype(dtype, copy=False)

    def uniform(self, shape, dtype, low=0.0, high=1.0):
        return self.rng.uniform(low, high, size=shape).astype(dtype, copy=False)

    def integers(self, low, high, shape, dtype):
        return self.rng.integers(low, high, size=shape).astype(dtype, copy=False)

    def permutation(self, n):
        return self.rng.permutation(n)


default_generator = Generator(0)


def manual_seed(seed):
    """Reseed the default generator (CPU) so that runs repeat exactly."""
    default_generator.manual_seed(seed)
    return default_generator
