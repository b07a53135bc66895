"""collide: how often NAT source-port reuse and a multi-node L4 load balancer reset TCP connections.

    >>> import collide
    >>> r = collide.simulate("seed", seed=1)
    >>> r.collisions_per_hour, r.analytic.collisions_per_hour

The names below are loaded when first used, so that `import collide` (and the `collide` command's
start, which a Ctrl-C may cut) does not pay for numpy and the compiled core before it needs them.
"""
import importlib as _importlib

# light (no numpy); the function `analytic` must win over the submodule of that name
from .analytic import analytic
from .scenario import Scenario, ScenarioError

__version__ = "0.1.0"
__all__ = ["Scenario", "ScenarioError", "simulate", "first_reset", "analytic", "sweep", "Result",
           "FirstReset", "simulate_allocators", "solve", "Budget", "AllocatorRange", "plot",
           "__version__"]

_WHERE = {"simulate": "api", "first_reset": "api", "simulate_allocators": "api",
          "Result": "api", "FirstReset": "api", "AllocatorRange": "api",
          "solve": "studies.solve", "Budget": "studies.solve"}
#: Submodules reached as attributes: `collide.sweep(...)` (a callable module), `collide.plot.plot_sweep`.
_MODULES = {"sweep": "collide.sweep", "plot": "collide.plot", "report": "collide.report",
            "scan": "collide.scan", "files": "collide.files", "sizing": "collide.sizing",
            "engine": "collide.engine", "api": "collide.api", "stats": "collide.stats",
            "studies": "collide.studies"}


def __getattr__(name):
    if name in _WHERE:
        value = getattr(_importlib.import_module(f"collide.{_WHERE[name]}"), name)
    elif name in _MODULES:
        value = _importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'collide' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_MODULES))
