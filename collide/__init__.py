"""collide: how often NAT source-port reuse and a multi-node L4 load balancer reset TCP connections.

    >>> import collide
    >>> r = collide.simulate("seed", seed=1)
    >>> r.collisions_per_hour, r.analytic.collisions_per_hour
"""
from .analytic import analytic
from .api import FirstReset, Result, first_reset, simulate
from .scenario import Scenario, ScenarioError

__version__ = "0.1.0"
__all__ = ["Scenario", "ScenarioError", "simulate", "first_reset", "analytic", "sweep", "Result",
           "FirstReset", "__version__"]


def __getattr__(name):
    # the sweep layer pulls in executors and I/O; load it only when asked for
    if name == "sweep":
        from .sweep import sweep
        return sweep
    raise AttributeError(name)
