"""`collide lab`: run a scenario on this machine's kernel and compare with the model."""
from __future__ import annotations

import json

import click

from ..errors import InputError, Unavailable
from ..options import resolve_scenario, seed_option
from ..scenario import ScenarioError
from .run import MAX_SECONDS, LabInterrupted, run_lab
from .topology import LabConfigError, LabError, LabUnavailable

DEFAULT_HORIZON = 30.0
_CZ = {True: "on", False: "off"}


def _ports(text: str | None, flag: str):
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.split("-"))
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected MIN-MAX, e.g. 20000-21999") from None
    return lo, hi


def _one(new: str, old: str, a, b):
    """A flag and its old name (a hidden alias): either one, or both saying the same."""
    if a is not None and b is not None and a != b:
        raise InputError(f"{new} and {old}: give one ({old} is the old name of {new})")
    return a if a is not None else b


def format_table(r: dict) -> str:
    iv = r["predicted_interval"]
    pred = "n/a" if r["predicted_collisions"] is None else f"{r['predicted_collisions']:.2f}"
    ivs = "n/a" if iv is None else f"[{iv[0]}, {iv[1]}]"
    verdict = {True: "within the interval", False: "OUTSIDE the interval", None: "no prediction"}
    d = r["duration"]
    cl, k = r["clients"], r["kernel_counters"]
    lines = [
        f"lab: {r['nodes']} nodes, {r['targets']} targets, NAT {r['nat']} ({r['nat_ips']} IP, ports "
        f"{r['port_min']}-{r['port_max']}), cross-zone {_CZ.get(r['cross_zone'], r['cross_zone'])}, "
        f"{r['client_addresses']} client addresses",
        f"load: {r['rate_driven']:g} connections/s for {r['seconds']:g} s, {d['dist']} lifetimes "
        f"(mean {d['mean']:g} s), cold start, seed {r['seed']}; challenge ACKs routed to the "
        f"{r['challenge_ack_routing']} connection's client",
        "",
        f"  connections              {r['connections']}",
        f"  measured collisions      {r['measured_collisions']}   (first SYNs meeting a connection "
        "established through another node)",
        f"  predicted collisions     {pred}   99.9% predictive interval {ivs}",
        f"                           ({r['prediction_source'] or '-'})",
        f"  verdict                  {verdict[r['within_interval']]}",
    ]
    if r.get("analytic_collisions") is not None:
        lines.append(f"  closed form (cold start) {r['analytic_collisions']:.2f}")
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
  collide lab --scenario seed --horizon 30
  collide lab --scenario seed --horizon 30 --nat preserve --format json""")
@click.option("--scenario", "scenario_name", metavar="NAME", help="A built-in scenario (default: seed).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="A scenario TOML file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a scenario key.")
@click.option("--rate", type=float, help="New connections per second.")
@click.option("--duration", type=float, help="Mean connection lifetime (same distribution).")
@click.option("--nodes", type=int, help="Load-balancer nodes.")
@click.option("--targets", type=int, help="Targets, spread over the zones.")
@click.option("--nat-ips", type=int, help="NAT public addresses.")
@click.option("--cross-zone/--no-cross-zone", default=None, help="Default: the scenario's setting.")
@click.option("--cross-zone-one-sided", "one_sided", is_flag=True,
              help="Cross-zone on at node 0 only, the other nodes keep to their zone (a setting "
                   "half rolled out; the model has none, so no prediction).")
@click.option("--horizon", type=click.FloatRange(1, MAX_SECONDS), metavar="S",
              help=f"Seconds of load, and the model's window [default: {DEFAULT_HORIZON:g}].")
@click.option("--seconds", "seconds_alias", type=click.FloatRange(1, MAX_SECONDS), hidden=True)
@click.option("--nat", type=click.Choice(["random", "preserve"]), default="random", show_default=True,
              help="random: fully-random SNAT (model: random); preserve: port-preserving SNAT in front "
                   "of Linux clients (model: linux).")
@click.option("--nat-ports", metavar="MIN-MAX",
              help="The NAT's port range (default: the scenario's); the model uses the same.")
@click.option("--ports", "ports_alias", metavar="MIN-MAX", hidden=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@seed_option
@click.option("--keep-logs", type=click.Path(file_okay=False), metavar="DIR",
              help="Copy the raw logs (conntrack events, server and client logs) to DIR.")
@click.option("--challenge-ack", "routing", type=click.Choice(["older", "new"]), default="older",
              show_default=True,
              help="Where a target's challenge ACK goes: older (the established connection's node: "
                   "the new connect is delayed) or new (the latest SYN's node: the older "
                   "connection is reset).")
@click.option("--capture", "capture_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write each target's packets (tcpdump in its namespace) to DIR/target-<t>.pcap "
                   "for `collide scan`, the NAT's and node 0's to DIR/forwarders/, and the run's "
                   "JSON with the counters at the captures' end to DIR/lab.json.")
@click.pass_context
def lab_command(ctx, scenario_name, config_path, sets, rate, duration, nodes, targets, nat_ips,
                cross_zone, one_sided, horizon, seconds_alias, nat, nat_ports, ports_alias, fmt, seed,
                keep_logs, routing, capture_dir):
    """Reproduce collisions on this machine's kernel (network namespaces; needs root)."""
    horizon = _one("--horizon", "--seconds", horizon, seconds_alias)
    if one_sided:
        if cross_zone is False:
            raise InputError("--cross-zone-one-sided and --no-cross-zone: give one")
        cross_zone = "one-sided"
    horizon = DEFAULT_HORIZON if horizon is None else horizon
    nat_ports = _one("--nat-ports", "--ports", nat_ports, ports_alias)
    flag = "--nat-ports" if ports_alias is None else "--ports"
    s = resolve_scenario(scenario_name, config_path, sets, rate=rate, duration=duration,
                         nodes=nodes, targets=targets, nat_ips=nat_ips)
    port_range = _ports(nat_ports, flag)
    from ..files import check_output_dir
    if keep_logs is not None:            # the places for the logs and captures, before the run
        check_output_dir(keep_logs, "--keep-logs")
    if capture_dir is not None:
        check_output_dir(capture_dir, "--capture")

    def progress(message: str) -> None:      # JSON keeps stderr to what the user must know
        if fmt == "table" or "scaled down" in message or "removed" in message:
            click.echo(message, err=True)

    try:
        result = run_lab(s, horizon, cross_zone=cross_zone, nat=nat, progress=progress, seed=seed,
                         port_range=port_range, keep_logs=keep_logs, routing=routing,
                         capture_dir=capture_dir)
    except LabUnavailable as exc:            # no root, a missing package: the machine's (exit 3)
        raise Unavailable(str(exc).removeprefix("collide lab: ")) from None
    except (LabConfigError, ScenarioError) as exc:      # the scenario or a flag (exit 2)
        raise InputError(str(exc)) from None
    except (KeyboardInterrupt, LabInterrupted):
        click.echo("interrupted: the lab's namespaces were removed", err=True)
        ctx.exit(130)
    except LabError as exc:
        click.echo(f"collide: error: the lab failed: {exc}", err=True)
        ctx.exit(1)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, allow_nan=False))
    else:
        click.echo(format_table(result))


def main() -> None:      # `python -m collide.lab.cli`, as the main CLI registers the command
    lab_command(prog_name="collide lab")


if __name__ == "__main__":
    main()
