"""`collide scan CAPTURE...`: the collisions in a capture, the traffic as a scenario, the verdict."""
from __future__ import annotations

import json
import math
import os
import sys
import click

from ..options import (BadInput, Finite, backend_option, bad_input, force_option, format_option,
                       progress_bar, seed_option)


WHERE = {"target": "at the targets", "client": "at a client", "nat": "at a NAT host",
         "load-balancer": "at a load-balancer node"}


def _ports(text):
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.split("-"))
    except ValueError:
        bad_input(f"--nat-ports {text!r}: expected MIN-MAX, e.g. 1024-65535")
    if not 1 <= lo <= hi <= 65535:
        bad_input(f"--nat-ports {text!r}: need 1 <= MIN <= MAX <= 65535")
    return lo, hi


def check_out(out: str | None, overwrite: bool = False):
    """--out DIR: checked and locked before any work (collide.files.OutputDir: a folder that is
    not empty needs --overwrite, and then only scan's own files are replaced)."""
    if out is None:
        return None
    from ..files import OutputDir
    return OutputDir(out, "--out", overwrite=overwrite, writer="collide scan",
                     names=("scenario.toml", "lifetimes.csv"))


def write_out(place, obs, result) -> list[str]:
    """scenario.toml (+ lifetimes.csv when the scenario names it), staged inside the folder and
    renamed into place: all or nothing, no stale lifetimes.csv beside a scenario without one."""
    with place.writing() as tmp:
        s = obs.scenario(nodes=result["nodes"], targets=result["targets"],
                         cross_zone=result["cross_zone"], nat_ports=result["nat_ports"],
                         lifetimes_dir=str(tmp))
        text = s.to_toml(relative_to=tmp)
        head = ["# made by `collide scan` from " + ", ".join(os.path.basename(f) for f in obs.files),
                f"# {obs.connections:,} connections over {obs.span_s:.6g} s; "
                f"{obs.collisions:,} collisions seen"]
        for m in result["missing"]:
            head.append("# " + m.replace("--nodes N", "load_balancer.nodes").replace(
                "no prediction without it", "set load_balancer.nodes (3 is a placeholder)"))
        (tmp / "scenario.toml").write_text("\n".join(head) + "\n\n" + text, encoding="utf-8")
        written = ["scenario.toml"]
        if s.traffic.duration.dist == "empirical" and (tmp / "lifetimes.csv").exists():
            written.append("lifetimes.csv")
        else:
            (tmp / "lifetimes.csv").unlink(missing_ok=True)
    return [str(place.path / n) for n in written]


def _f(x, digits=3):
    from ..cli import _num          # the command line's number format (imported late: cli loads us)
    return _num(x, digits)


def _t(rel):
    if rel is None:
        return "-"
    if rel < 1e-3:
        return f"+{rel * 1e6:.0f} us"
    return f"+{rel * 1000:.1f} ms" if rel < 1 else f"+{rel:.2f} s"


def format_table(d: dict, listed: int = 10) -> str:
    rows = []
    files = d["files"]
    fmts = sorted(set(d["formats"]))
    rows.append(("capture", f"{len(files)} file(s), {'/'.join(fmts)}, {d['packets']:,} packets "
                            f"({d['tcp_packets']:,} TCP), {d['window_s']:.4g} s of traffic; taken "
                            f"{WHERE[d['capture_side']]} ({d['capture_side_reason']})"))
    rows.append(("targets", f"{len(d['targets_seen'])} seen: " + ", ".join(d["targets_seen"][:6])
                            + (" ..." if len(d["targets_seen"]) > 6 else "")))
    sched = d["schedule"]
    rate = f"{_f(d['rate_per_s'])} new connections/s" + (
        f" (moving: {len(sched)} segments, " + ", ".join(
            f"{r:.3g}/s from {s:g} s" for s, r in sched[:4]) + (" ..." if len(sched) > 4 else "")
        + ")" if sched else " (steady)")
    rows.append(("traffic", f"{d['connections']:,} connections, {rate}"))
    ls = d["lifetime_sample"]
    rows.append(("lifetimes", f"mean {_f(d['lifetime_mean_s'])} s, median "
                              f"{_f(d['lifetime_median_s'])} s (Kaplan-Meier over {ls['n']:,}: "
                              f"{ls['censored']:,} censored; completed only: "
                              f"{_f(d['lifetime_naive_mean_s'])} s)"))
    scf = d["server_close_fraction"]
    rows.append(("closes", "-" if scf is None else f"target closes first {scf:.1%}"))
    rows.append(("sources", f"{d['sources']:,} address(es) -> NAT IPs {d['nat_ips']}; client "
                            f"ports {d['nat_ports'][0]}-{d['nat_ports'][1]} ({d['nat_ports_how']})"))
    rows.append(("SYNs", f"{d['connections']:,} new, {d['retransmissions']:,} retransmissions, "
                         f"{d['moved_by_nat']:,} moved to another port by the NAT, "
                         f"{d['seen_mid_life']:,} connections seen mid-life"))
    oc = d["outcomes"]
    if d.get("duplicate_packets"):
        rows.append(("duplicates", f"{d['duplicate_packets']:,} packets seen twice, counted once"))
    fw = d.get("forwarding")
    if fw:
        rows.append(("forwarding", f"{WHERE[fw['kind']].removeprefix('at ')}: "
                                   f"{fw['forwarded_syns']:,} SYNs seen forwarded; followed: "
                                   f"{fw['followed']}"))
    a = d.get("nat_allocator") or {}
    if a.get("statistic"):
        seen = a.get("port_range_seen")
        rows.append(("NAT allocator", f"{a['class']} ({a['evidence']} evidence: {a['why']}); "
                                      f"ports seen {seen[0]}-{seen[1]}"))
    if d["capture_side"] in ("client", "nat"):
        rows.append(("port overlaps", f"{d['port_overlaps']:,} SYNs from an ip:port live towards "
                                      "another load-balancer address at that moment"))
        rows.append(("symptoms", f"{d['challenge_acks']:,} SYNs answered by an ACK that does not "
                                 f"acknowledge them (challenge ACKs); {d['client_rsts']:,} RSTs back"))
    else:
        rows.append(("collisions", f"{d['collisions']:,}  (reset-existing {oc['reset-existing']:,}, "
                                   f"delay-new {oc['delay-new']:,}, unknown {oc['unknown']:,}); "
                                   f"challenge ACKs {d['challenge_acks']:,}, client RSTs "
                                   f"{d['client_rsts']:,}"))
        rows.append(("TIME_WAIT hits", f"{d['time_wait_hits']:,}; stale holders (idle past the "
                                       f"idle timeout) {d['stale']:,}"))
    if d["predictions"]:
        p = d["predictions"]
        lo, hi = d["predicted_interval"]
        parts = [f"{name} {_f(x['expected'])}" for name, x in p.items()]
        rows.append(("predicted", f"{_f(d['predicted_collisions'])} for the targets captured "
                                  f"(99.9 % interval for the count {lo}-{hi}; "
                                  + ", ".join(parts) + ")"))
        rows.append(("verdict", d["verdict"] + (
            "" if d["verdict"].startswith("the NAT") else " -- consider: "
            + "; ".join(d.get("verdict_consider", [])))))
    elif d.get("verdict_reason"):
        rows.append(("verdict", f"none: {d['verdict_reason']}"))
    nd = d.get("nodes")
    if nd:
        iv = nd["interval"]
        span = "none in 1-8" if iv is None else (f"N >= {iv[0]}" if iv[1] is None
                                                  else f"N = {iv[0]}-{iv[1]}")
        rows.append(("nodes", f"{nd['supported']}; the count fits {span}"
                              + (f" (given {nd['given']})" if nd["given"] else "")))
    for m in d["missing"]:
        rows.append(("needs", m))
    for n in d["notes"]:
        rows.append(("note", n))
    rows.append(("run", f"{d['elapsed_s']:.3g} s" + (f", seed {d['seed']}" if d.get("seed") is not None
                                                    else "")))
    w = max(len(r[0]) for r in rows)
    out = [f"  {k:<{w}}  {v}" for k, v in rows]
    cl = [r for r in d["collisions_listed"] if r["kind"] == "collision"]
    if cl and listed:
        out += ["", f"  first {min(listed, len(cl))} of {d['collisions']:,} collisions:",
                "  time (s)    client -> target                         holder age  challenge ACK"
                "      client RST  older ends          retx  connect     outcome"]
        t0 = d["start"] or 0.0
        for r in cl[:listed]:
            h = r["holder"] or {}
            age = "mid-life" if h.get("since") is None else f"{r['time'] - h['since']:.2f} s"
            ca = r["challenge_ack"]
            cas = "-" if ca is None else _t(ca["after_s"]) + (" names older" if ca["names_older"]
                                                               else "")
            rst = "-" if r["client_rst"] is None else _t(r["client_rst"]["after_s"])
            he = r["holder_end"]
            hes = "-" if he is None else f"{_t(he['after_s'])} {he['how'].replace('reset-by-new-client', 'reset')}"
            cd = "-" if r["connect_delay_s"] is None else f"{r['connect_delay_s']:.3g} s"
            out.append(f"  {r['time'] - t0:<10.3f}  {r['client'] + ' -> ' + r['target']:<40} "
                       f"{age:>10}  {cas:<17}  {rst:>10}  {hes:<18}  {r['syn_retransmissions']:>4}  "
                       f"{cd:>8}  {r['outcome']}")
    return "\n".join(out)


@click.command("scan", epilog="""\b
Examples:
  collide scan tests/data/lab-reset/*.pcap --nodes 3 --targets 6 --seed 1
  collide scan t-*.pcap --nodes 3 --out scan/ --format json""")
@click.argument("captures", nargs=-1, metavar="CAPTURE...", type=click.Path(dir_okay=True))
@click.option("--nodes", type=click.IntRange(1, 64), help="Load-balancer nodes (a capture shows "
              "only a lower bound; without it the verdict spans the counts the capture allows).")
@click.option("--targets", type=click.IntRange(1, 10_000_000),
              help="Targets in all (default: those seen; a capture of some scales the rate).")
@click.option("--port", type=click.IntRange(1, 65535), help="The targets' TCP port "
              "(default: the ports SYNs went to).")
@click.option("--time-wait", type=Finite(0, 3600), default=60.0, show_default=True,
              metavar="S", help="The targets' TIME_WAIT length.")
@click.option("--idle-timeout", type=Finite(1, 86400, min_open=False), default=350.0,
              show_default=True, metavar="S",
              help="Load balancer's and NAT's idle timeout: a holder idle longer is stale.")
@click.option("--cross-zone/--no-cross-zone", default=None,
              help="Cross-zone load balancing (not visible in a capture; default: assumed on).")
@click.option("--nat-ports", metavar="MIN-MAX", help="The NAT's port range (default: from the "
              "client ports seen).")
@click.option("--side", type=click.Choice(["auto", "target", "client", "nat", "load-balancer"]),
              default="auto", show_default=True,
              help="Where the capture was taken (auto: a host that forwards each SYN with an "
                   "address rewritten is a NAT or a load-balancer node; else the link layer's "
                   "direction; else a target). Only a target's capture gets a verdict.")
@click.option("--out", "out_dir", metavar="DIR", type=click.Path(file_okay=True),
              help="Write scenario.toml + lifetimes.csv for simulate/sweep/report --config.")
@click.option("--all-allocators", is_flag=True,
              help="Predict under random, sequential and linux NAT allocators: the envelope.")
@click.option("--list", "listed", type=click.IntRange(0), default=10, show_default=True,
              help="Collisions listed in the table.")
@click.option("--overwrite", is_flag=True,
              help="Write --out into a folder that is not empty: scan's own files are replaced, "
                   "nothing else is touched.")
@seed_option
@backend_option
@format_option
@force_option
def scan_command(captures, nodes, targets, port, time_wait, idle_timeout, cross_zone, nat_ports,
                 side, out_dir, all_allocators, listed, overwrite, seed, backend, fmt, force):
    """Find the 4-tuple collisions in packet captures taken at the targets (pcap, pcapng), describe
    the traffic as a scenario and hold the model's prediction against what was seen."""
    from . import CaptureInputError
    from .capture import check
    if not captures:
        bad_input("CAPTURE: give one or more capture files (pcap or pcapng, tcpdump -w)")
    try:
        for c in captures:           # every file checked before any work
            check(c)
    except CaptureInputError as exc:
        bad_input(str(exc))
    np_range = _ports(nat_ports)
    place = check_out(out_dir, overwrite)
    try:
        _scan(captures, nodes, targets, port, time_wait, idle_timeout, cross_zone, np_range, side,
              place, all_allocators, listed, seed, backend, fmt, force)
    finally:
        if place is not None:        # a folder made for this run and left empty goes again
            place.close(ok=False)


def _scan(captures, nodes, targets, port, time_wait, idle_timeout, cross_zone, np_range, side,
          place, all_allocators, listed, seed, backend, fmt, force):
    from . import CaptureInputError, scan
    from ..api import fresh_seed
    from ..files import temp_dir
    seed = fresh_seed() if seed is None else seed      # printed with the result
    update, done = progress_bar("reading")
    try:
        obs = scan(captures, port=port, time_wait=time_wait, idle_timeout=idle_timeout,
                   side=side, progress=update)
    except CaptureInputError as exc:
        done()
        bad_input(str(exc))
    except KeyboardInterrupt:
        done()
        click.echo("interrupted: nothing written", err=True)
        sys.exit(130)
    done()
    seen = len(obs.targets)
    if targets is not None and targets < seen:
        bad_input(f"--targets {targets}: fewer than the {seen} targets seen in the capture; give "
                  f"all the targets behind the load balancer (at least {seen})")
    with temp_dir("scan") as tmp:
        if nodes and obs.side != "client":      # the prediction is sized before it runs
            from ..options import check_size
            from ..sizing import size_runs
            from .verdict import ENVELOPE
            s = obs.scenario(nodes=nodes, targets=targets, cross_zone=cross_zone,
                             nat_ports=np_range, lifetimes_dir=str(tmp))
            check_size(size_runs("scan", s, runs=len(ENVELOPE) if all_allocators else 1,
                                 backend=backend), force)
        update, done = progress_bar("predicting")
        try:
            res = obs.verdict(nodes=nodes, targets=targets, cross_zone=cross_zone,
                              nat_ports=np_range, all_allocators=all_allocators, seed=seed,
                              backend=backend, progress=update, lifetimes_dir=str(tmp))
            done()
        except KeyboardInterrupt:           # a cut prediction is no answer: nothing printed
            done()
            click.echo("interrupted: nothing written", err=True)
            sys.exit(130)
    d = obs.to_dict(res)
    d["seed"] = seed
    if place is not None:
        from ..errors import held_interrupts
        res.update(nodes=nodes, targets=targets, cross_zone=cross_zone, nat_ports=np_range)
        with held_interrupts() as held:
            d["written"] = write_out(place, obs, res)
        if held.hit:
            click.echo(f"interrupted after --out was written ({place.path} is complete)", err=True)
            sys.exit(130)
    if fmt == "json":
        click.echo(json.dumps(d, indent=2, allow_nan=False, default=_json_default))
    else:
        click.echo(format_table(d, listed))
        if d.get("written"):
            click.echo(f"\n  wrote {', '.join(d['written'])}  (collide simulate --config "
                       f"{place.path / 'scenario.toml'})")


def _json_default(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    raise TypeError(type(x).__name__)
