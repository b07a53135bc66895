"""collide: how often NAT source-port reuse and a multi-node L4 load balancer reset TCP connections.

    >>> import collide
    >>> r = collide.simulate("seed", seed=1)
    >>> r.collisions_per_hour, r.analytic.collisions_per_hour
"""
from .analytic import analytic
from .api import AllocatorRange, FirstReset, Result, first_reset, simulate, simulate_allocators
from .scenario import Scenario, ScenarioError
from .studies.solve import Budget, solve
from . import sweep  # collide.studies.sweep, a callable module: collide.sweep(...) and collide.sweep.load_sweep(...)

__version__ = "0.1.0"
__all__ = ["Scenario", "ScenarioError", "simulate", "first_reset", "analytic", "sweep", "Result",
           "FirstReset", "simulate_allocators", "solve", "Budget", "AllocatorRange", "__version__"]

