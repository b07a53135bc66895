"""`collide lab`: run a scenario on this machine's kernel and compare with the model."""
from __future__ import annotations

import json
try:
    import tomllib
except ImportError:          # Python 3.10
    import tomli as tomllib

import click

from ..errors import InputError
from ..scenario import Scenario, ScenarioError
from .run import LabInterrupted, LabUnavailable, run_lab
from .topology import LabConfigError, LabError


def _fail(ctx: click.Context, message: str, code: int = 2):
    click.echo(f"collide lab: {message}" if not message.startswith("collide lab") else message, err=True)
    ctx.exit(code)


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _ports(text: str | None):
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.split("-"))
    except ValueError:
        raise ScenarioError(f"--ports {text!r}: expected MIN-MAX, e.g. 20000-21999") from None
    return lo, hi


def _resolve(scenario: str | None, config: str | None, sets, overrides: dict) -> Scenario:
    if scenario is not None and config is not None:
        raise ScenarioError("--scenario and --config: give one of them, not both")
    s = Scenario.from_toml(config) if config is not None else Scenario.builtin(
        "seed" if scenario is None else scenario)
    changes = {}
    for item in sets:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        changes[k.strip()] = _value(v.strip())
    changes.update({k: v for k, v in overrides.items() if v is not None})
    from ..options import _check_duration_flag
    _check_duration_flag(s, changes, overrides.get("traffic.duration.mean"))
    return s.replace(changes) if changes else s


def format_table(r: dict) -> str:
    iv = r["predicted_interval"]
    pred = "n/a" if r["predicted_collisions"] is None else f"{r['predicted_collisions']:.2f}"
    ivs = "n/a" if iv is None else f"[{iv[0]}, {iv[1]}]"
    verdict = {True: "within the interval", False: "OUTSIDE the interval", None: "no prediction"}
    d = r["duration"]
    cl, k = r["clients"], r["kernel_counters"]
    lines = [
        f"lab: {r['nodes']} nodes, {r['targets']} targets, NAT {r['nat']} ({r['nat_ips']} IP, ports "
        f"{r['port_min']}-{r['port_max']}), cross-zone {'on' if r['cross_zone'] else 'off'}, "
        f"{r['client_addresses']} client addresses",
        f"load: {r['rate_driven']:g} connections/s for {r['seconds']:g} s, {d['dist']} lifetimes "
        f"(mean {d['mean']:g} s), cold start, seed {r['seed']}; challenge ACKs routed to the "
        f"{r['challenge_ack_routing']} connection's client",
        "",
        f"  connections              {r['connections']}",
        f"  measured collisions      {r['measured_collisions']}   (first SYNs meeting a connection "
        "established through another node)",
        f"  predicted collisions     {pred}   99.9% interval {ivs}  ({r['prediction_source'] or '-'})",
        f"  verdict                  {verdict[r['within_interval']]}",
    ]
    if r.get("simulated_collisions_mean") is not None:
        lines.append(f"  engine (mean of seeds)   {r['simulated_collisions_mean']:.2f}")
    lines += [
        "",
        "kernel (all targets, nstat):",
        f"  TcpExtTCPSYNChallenge    {k['TcpExtTCPSYNChallenge']}   (about one per SYN retry of a "
        "colliding connect)",
        f"  TcpExtTCPChallengeACK    {k['TcpExtTCPChallengeACK']}",
        f"  TcpEstabResets           {k['TcpEstabResets']}",
        f"  PAWS (estab/active)      {k['TcpExtPAWSEstab']}/{k['TcpExtPAWSActive']}",
        f"  TIME_WAIT (TW/recycled/killed/ack-skipped) {k['TcpExtTW']}/{k['TcpExtTWRecycled']}/"
        f"{k['TcpExtTWKilled']}/{k['TcpExtTCPACKSkippedTimeWait']}",
        "clients:",
        f"  connects slower than 0.9 s {cl['slow_connects']}, resets {cl['resets']}, timeouts "
        f"{cl['timeouts']}, stalled {cl['stalled']}, still connecting at the end {cl['pending_at_end']}",
        f"  NAT remaps after an RST  {r['nat_remaps']}",
        f"  first SYNs on a TIME_WAIT 4-tuple at the target (server closed first) {r['time_wait_hits']}",
    ]
    if r["collision_connect_s_median"] is not None:
        lines.append(f"  median connect time of colliding connects {r['collision_connect_s_median']:.2f} s"
                     + (f" (model, delay-new with Linux SYN retries: {r['model_connect_delay_p50_s']:g} s)"
                        if r.get("model_connect_delay_p50_s") is not None else ""))
    if r.get("captures"):
        lines.append(f"captures: {len(r['captures'])} files, e.g. {r['captures'][0]} "
                     f"(collide scan {' '.join(r['captures'][:1])} ...)")
    for n in r["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)


@click.command("lab", epilog="""\b
Examples (as root):
  collide lab --scenario seed --seconds 30
  collide lab --scenario seed --seconds 30 --nat preserve --format json""")
@click.option("--scenario", "scenario_name", metavar="NAME", help="A built-in scenario (default: seed).")
@click.option("--config", type=click.Path(dir_okay=False), metavar="FILE", help="A scenario TOML file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a scenario key.")
@click.option("--rate", type=float, help="New connections per second.")
@click.option("--duration", type=float, help="Mean connection lifetime (same distribution).")
@click.option("--nodes", type=int, help="Load-balancer nodes.")
@click.option("--targets", type=int, help="Targets, spread over the zones.")
@click.option("--nat-ips", type=int, help="NAT public addresses.")
@click.option("--cross-zone/--no-cross-zone", default=None, help="Default: the scenario's setting.")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Length of the load.")
@click.option("--nat", type=click.Choice(["random", "preserve"]), default="random", show_default=True,
              help="random: fully-random SNAT (model: random); preserve: port-preserving SNAT in front "
                   "of Linux clients (model: linux).")
@click.option("--ports", metavar="MIN-MAX",
              help="The NAT's port range (default: the scenario's); the model uses the same.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--seed", type=int, help="Seed of the load's random draws (default: fresh, printed).")
@click.option("--keep-logs", type=click.Path(file_okay=False), metavar="DIR",
              help="Copy the raw logs (conntrack events, server and client logs) to DIR.")
@click.option("--challenge-ack", "routing", type=click.Choice(["older", "new"]), default="older",
              show_default=True,
              help="Where a target's challenge ACK goes: older (the established connection's node: "
                   "the new connect is delayed) or new (the latest SYN's node: the older "
                   "connection is reset).")
@click.option("--capture", "capture_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write each target's packets (tcpdump in its namespace) to DIR/target-<t>.pcap "
                   "for `collide scan`.")
@click.pass_context
def lab_command(ctx, scenario_name, config, sets, rate, duration, nodes, targets, nat_ips, cross_zone,
                seconds, nat, ports, fmt, seed, keep_logs, routing, capture_dir):
    """Reproduce collisions on this machine's kernel (network namespaces; needs root)."""
    try:
        s = _resolve(scenario_name, config, sets, {
            "traffic.rate": rate, "traffic.duration.mean": duration, "load_balancer.nodes": nodes,
            "load_balancer.targets": targets, "nat.ips": nat_ips})
        from ..files import check_output_dir
        if keep_logs is not None:            # the places for the logs and captures, before the run
            check_output_dir(keep_logs, "--keep-logs")
        if capture_dir is not None:
            check_output_dir(capture_dir, "--capture")

        def progress(message: str) -> None:      # JSON keeps stderr to what the user must know
            if fmt == "table" or "scaled down" in message or "removed" in message:
                click.echo(message, err=True)

        result = run_lab(s, seconds, cross_zone=cross_zone, nat=nat, progress=progress, seed=seed,
                         port_range=_ports(ports), keep_logs=keep_logs, routing=routing,
                         capture_dir=capture_dir)
    except LabUnavailable as exc:            # no root, a missing package: the machine's
        _fail(ctx, str(exc), 3)
        return
    except (ScenarioError, LabConfigError, InputError) as exc:
        _fail(ctx, str(exc), 2)
        return
    except (KeyboardInterrupt, LabInterrupted):
        _fail(ctx, "interrupted; the lab's namespaces were removed", 130)
        return
    except LabError as exc:
        _fail(ctx, f"the lab failed: {exc}", 1)
        return
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        click.echo(format_table(result))


def main() -> None:      # `python -m collide.lab.cli`, before the main CLI registers the command
    lab_command(prog_name="collide lab")


if __name__ == "__main__":
    main()
