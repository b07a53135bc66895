"""Reusable click options, one registry for every subcommand (docs/model.md §4.2).

  --scenario NAME / --config FILE       a built-in scenario or a TOML file
  --set KEY=VALUE (repeatable)          any scenario key, dotted
  --rate --duration --horizon --nodes --targets --nat-ips --allocator --on-collision
  --cross-zone/--no-cross-zone --client-ip-preservation/--no-client-ip-preservation
  --seed N --backend --format --estimate target|full|off (--no-estimate)     run options
"""
from __future__ import annotations

import functools
import tomllib

import click

from .errors import InputError
from .scenario import ALLOCATORS, OUTCOMES, Scenario, ScenarioError, builtin_names


#: Bad input: one line on stderr, exit code 2, no traceback (docs/model.md §4.2).
BadInput = InputError


def bad_input(message: str):
    raise InputError(message)


def _parse_value(key: str, text: str, flag: str = "--set", item: str = ""):
    """A --set value is read as TOML (numbers, true/false, lists, inline tables), else a string;
    one value: what follows it (a newline and more TOML) is refused, not dropped."""
    try:
        data = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        if "\n" in text or "\r" in text:
            bad_input(f"{flag} {item!r}: one KEY=VALUE per {flag}, on one line")
        return text
    except RecursionError:
        bad_input(f"{flag} {item!r}: nested too deeply")
    if set(data) != {"v"}:
        bad_input(f"{flag} {item!r}: one KEY=VALUE per {flag}; give each key its own {flag}")
    return data["v"]


def parse_assignments(items, flag: str, example: str) -> dict:
    """KEY=VALUE items of a repeatable flag (--set, --where) into a dict; values read as TOML."""
    out = {}
    for item in items:
        if "=" not in item:
            bad_input(f"{flag} {item!r}: must be KEY=VALUE, e.g. {flag} {example}")
        key, _, text = item.partition("=")
        if not key.strip():
            bad_input(f"{flag} {item!r}: the key is empty; must be KEY=VALUE, e.g. {flag} {example}")
        out[key.strip()] = _parse_value(key, text.strip(), flag, item)
    return out


class Finite(click.FloatRange):
    """A float flag that refuses nan and inf (click's FloatRange lets nan through: every
    comparison with it is false), so the message names the flag the user typed."""
    name = "finite number"

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if rv != rv or rv in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv

    def _describe_range(self) -> str:
        # unbounded unless given a bound (click would print "[x<=None]" in --help)
        return "" if self.min is None and self.max is None else super()._describe_range()


FINITE = Finite()


def scenario_options(f):
    """--scenario/--config plus the override flags."""
    opts = [
        click.option("--scenario", "scenario_name", metavar="NAME",
                     help=f"A built-in scenario: {', '.join(builtin_names())}."),
        click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False),
                     help="A scenario TOML file (docs/model.md §4.1 tables)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any key, e.g. --set nat.ips=2 (repeatable)."),
        click.option("--rate", type=FINITE, help="New connections per second (traffic.rate)."),
        click.option("--duration", type=FINITE,
                     help="Mean connection lifetime in seconds, same distribution."),
        click.option("--horizon", type=FINITE, help="Measured seconds (traffic.horizon)."),
        click.option("--nodes", type=int, help="Load-balancer nodes (load_balancer.nodes)."),
        click.option("--targets", type=int, help="Targets in all zones (load_balancer.targets)."),
        click.option("--nat-ips", type=int, help="NAT public IPs (nat.ips)."),
        click.option("--allocator", type=str, help=f"NAT port allocator: {'|'.join(ALLOCATORS)}."),
        click.option("--on-collision", type=str, help=f"Outcome: {'|'.join(OUTCOMES)}."),
        click.option("--cross-zone/--no-cross-zone", default=None,
                     help="Cross-zone load balancing."),
        click.option("--client-ip-preservation/--no-client-ip-preservation", default=None,
                     help="Targets see the client ip:port."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def resolve_scenario(scenario_name=None, config_path=None, sets=(), rate=None, duration=None,
                     horizon=None, nodes=None, targets=None, nat_ips=None, allocator=None,
                     on_collision=None, cross_zone=None, client_ip_preservation=None,
                     default: str | None = "seed") -> Scenario:
    """The scenario the flags describe; BadInput (exit 2) on anything wrong."""
    if scenario_name is not None and config_path is not None:
        bad_input("--scenario and --config: give one, not both")
    if scenario_name is not None and not scenario_name.strip():
        bad_input(f"--scenario {scenario_name!r}: an empty name; allowed: {', '.join(builtin_names())}")
    try:
        if config_path is not None:
            s = Scenario.from_toml(config_path)
        elif scenario_name is not None:
            s = Scenario.builtin(scenario_name)
        elif default:
            s = Scenario.builtin(default)
        else:
            bad_input("give --scenario NAME or --config FILE")
        changes = parse_assignments(sets, "--set", "nat.ips=2")
        flags = {"traffic.rate": rate, "traffic.duration.mean": duration,
                 "traffic.horizon": horizon, "load_balancer.nodes": nodes,
                 "load_balancer.targets": targets, "nat.ips": nat_ips, "nat.allocator": allocator,
                 "target.on_collision": on_collision, "load_balancer.cross_zone": cross_zone,
                 "load_balancer.client_ip_preservation": client_ip_preservation}
        changes.update({k: v for k, v in flags.items() if v is not None})
        _check_duration_flag(s, changes, duration)
        return s.replace(changes) if changes else s
    except ScenarioError as exc:
        bad_input(str(exc))


def _check_duration_flag(s: Scenario, changes: dict, duration) -> None:
    """--duration sets the mean of the lifetime law; a measured (empirical) law has none to set."""
    if duration is None:
        return
    law = changes.get("traffic.duration", s.traffic.duration.to_dict())
    if isinstance(law, dict) and law.get("dist") == "empirical":
        where = law.get("file") or "the file"
        bad_input(f"--duration {duration:g}: the lifetimes are measured (traffic.duration.dist = "
                  f"\"empirical\", {where}) and have no mean to set; scale the file's values, or "
                  "give a law with a mean (--set 'traffic.duration={dist=\"exponential\", mean=5}')")


SCENARIO_KEYS = ("scenario_name", "config_path", "sets", "rate", "duration", "horizon", "nodes",
                 "targets", "nat_ips", "allocator", "on_collision", "cross_zone",
                 "client_ip_preservation")


def pop_scenario(kwargs: dict, default: str | None = "seed") -> Scenario:
    """Take the scenario flags out of a command's kwargs and resolve them."""
    return resolve_scenario(**{k: kwargs.pop(k) for k in SCENARIO_KEYS}, default=default)


seed_option = click.option("--seed", type=click.IntRange(min=0), default=None,
                           help="Random seed (default: fresh, printed with the result).")
backend_option = click.option("--backend", type=click.Choice(["cython", "numba", "python"]),
                              default="cython", show_default=True, help="Simulation engine.")
format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]),
                             default="table", show_default=True, help="Output format.")


def estimate_option(f):
    """--estimate target|full|off, and --no-estimate (= off); the command gets `estimate`: the
    choice, or None for the default (docs/model.md §3: the most precision per second)."""
    f = click.option("--no-estimate", "no_estimate", is_flag=True,
                     help="Count only (= --estimate off).")(f)
    f = click.option("--estimate", type=click.Choice(["target", "full", "off"]), default=None,
                     help="The conditional estimate kept: full (default where a collision can "
                          "happen: the tightest per second), target (cheap), off.")(f)

    @functools.wraps(f)
    def wrapper(*args, estimate=None, no_estimate=False, **kw):
        if no_estimate and estimate not in (None, "off"):
            bad_input(f"--estimate {estimate} and --no-estimate: give one")
        return f(*args, estimate="off" if no_estimate else estimate, **kw)
    return wrapper


def workers_option(what: str):
    """--workers N, one default everywhere work runs in parallel: all cores (at most one process per
    `what`, so a single run stays in this process)."""
    return click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
                        help=f"Processes to spread the {what} over (default: all cores, at most one "
                             f"per {what.rstrip('s')}).")


force_option = click.option("--force", is_flag=True,
                            help="Run even when the size check says it will not fit in memory or "
                                 "would take more than a day.")


def check_size(size, force: bool) -> None:
    """Refuse or state the size of what a command is about to do (collide.sizing)."""
    from .sizing import check
    check(size, force, echo=lambda line: click.echo(line, err=True))


def progress_bar(label: str):
    """(update(fraction), done) for the engine's progress callback (collide.progress, tqdm)."""
    from .progress import fraction_bar
    return fraction_bar(label)


def handle_value_errors(f):
    """Map ValueError/ScenarioError from the API to one-line bad-input errors (exit 2)."""
    @functools.wraps(f)
    def wrapper(*a, **kw):
        try:
            return f(*a, **kw)
        except ScenarioError as exc:
            bad_input(str(exc))
        except ValueError as exc:
            if str(exc).startswith("--"):
                bad_input(str(exc))
            raise
    return wrapper


def budget_options(resets: str | None = None, probability: str | None = None,
                   within: str | None = None, start: bool = True):
    """--max-resets N/PERIOD | --max-probability P --within DURATION (and --start): one budget, the
    same flags for solve, report, plot and intake; each command words what the budget is for."""
    opts = [
        click.option("--max-resets", "max_resets", metavar="N/PERIOD", default=None,
                     help=resets or "The budget: at most N resets per hour, day, week, month (30 d) "
                                    "or year (365 d), e.g. 1/week."),
        click.option("--max-probability", "max_probability", metavar="P", default=None,
                     help=probability or "The budget: P(at least one reset within --within) at "
                                         "most P, e.g. 0.01."),
        click.option("--within", "within", metavar="DURATION", default=None,
                     help=within or "The window of --max-probability: <number>[s|m|h|d|w], e.g. "
                                    "30d."),
    ]
    if start:
        opts.append(click.option("--start", type=click.Choice(["steady", "cold"]), default="steady",
                                 show_default=True,
                                 help="steady: judged from the stationary state; cold: a window "
                                      "that starts with no live connection, as a load test."))

    def decorate(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return decorate
