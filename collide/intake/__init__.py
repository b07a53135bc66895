"""`collide intake FILE...`: the scenario and the verdict from what AWS and Kubernetes already
report (issue 26).

    >>> from collide.intake import intake
    >>> r = intake(["tests/data/intake/aws"], seed=1)
    >>> r.intake.scenario.load_balancer.nodes, r.prediction.per_hour, r.verdict["text"]

The package, one module per idea:
  shapes    which output each file is (by its shape), truncated and unknown files refused
  service   a Kubernetes Service's annotations and the AWS Load Balancer Controller's defaults
  binding   which files belong to the one load balancer (ARN, DNSName), the rest refused
  metrics   CloudWatch series: which metric, the window, per-period counts
  build     the scenario, with where every value came from, what was assumed, what is missing
  traffic   what CloudWatch says: rate, schedule, lifetime, window, the observed resets
  verdict   the prediction (closed form, else simulate to 3 % SE) and the verdict both ways
  text      the table and the JSON
  commands  `--print-commands`: the aws and kubectl commands and the CloudWatch query file
  report    the "Observed" section of `collide report --intake`
  advice    the first line of `collide solve` for a budget (the change that meets it)
"""
from __future__ import annotations

from dataclasses import dataclass

from .advice import advice as _advice
from .binding import Bound, bind
from .build import Intake, describe
from .shapes import IntakeInputError, expand, read
from .verdict import Prediction, predict, verdict as _verdict

SCHEMA_VERSION = 1

__all__ = ["intake", "read_set", "IntakeResult", "IntakeInputError", "SCHEMA_VERSION"]


def read_set(paths) -> Bound:
    """Every file read and recognised, then bound to one load balancer (bad input: one line)."""
    files = expand(paths)
    if not files:
        raise IntakeInputError("FILE: give one or more outputs (or a directory of them); "
                               "`collide intake --print-commands` prints the commands")
    return bind([read(p) for p in files])


@dataclass
class IntakeResult:
    intake: Intake
    prediction: Prediction
    verdict: dict
    advice: str | None

    def to_dict(self) -> dict:
        it, p = self.intake, self.prediction
        obs = it.observed
        return {
            "schema_version": SCHEMA_VERSION,
            "sources": it.sources,
            "assumed": it.assumed,
            "missing": it.missing,
            "scenario": it.scenario.to_dict(),
            "observed": {k: obs.get(k) for k in (
                "new_flows_per_s", "mean_lifetime_s", "resets_per_hour", "client_resets_per_hour",
                "elb_resets_per_hour", "nat_port_allocation_errors")},
            "predicted_per_hour": float(p.per_hour),
            "predicted_interval": [float(x) for x in p.interval_per_hour],
            "verdict": self.verdict,
            "advice": self.advice,
        }


def intake(paths, sets=(), *, seed: int = 1, backend: str = "cython", budget=None,
           workers=None, progress=None) -> IntakeResult:
    """Read, bind, describe, predict and judge; with a `budget` ("1/day", a solve Budget), also
    the change that meets it (`collide solve`'s first line). Raises IntakeInputError (exit 2) for
    a bad file, and for a set whose rate or node count is unknown (naming the --set that supplies
    it)."""
    it = describe(read_set(paths), sets)
    if it.refused:
        raise IntakeInputError(it.refused)
    s = it.scenario
    p = predict(s, window_s=s.traffic.horizon, seed=seed, backend=backend,
                progress=None if progress is None else (lambda f: progress(f / 2 if budget else f)))
    line = _advice(s, budget, seed=seed, backend=backend, workers=workers,
                   progress=None if progress is None else (lambda f: progress(0.5 + f / 2)))
    return IntakeResult(it, p, _verdict(it, p), line)
