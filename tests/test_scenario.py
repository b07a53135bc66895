"""Scenario loading and validation: one line naming the key, the value and what is allowed."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

from collide.cli import cli
from collide.scenario import Scenario, ScenarioError, builtin_names

BAD = [
    ({"traffic": {"rate": 0}}, "traffic.rate = 0: must be > 0"),
    ({"traffic": {"rate": -5.0}}, "traffic.rate = -5.0: must be > 0"),
    ({"traffic": {"rate": "fast"}}, "traffic.rate = 'fast': must be a finite number"),
    ({"traffic": {"horizon": 0}}, "traffic.horizon = 0: must be > 0"),
    ({"traffic": {"clients": 0}}, "traffic.clients = 0: must be an integer >= 1"),
    ({"traffic": {"warmup": "soon"}}, "traffic.warmup = 'soon'"),
    ({"traffic": {"duration": {"dist": "weibull", "mean": 3}}}, "traffic.duration.dist = 'weibull'"),
    ({"traffic": {"duration": {"dist": "exponential", "mean": 0}}}, "traffic.duration.mean = 0"),
    ({"traffic": {"duration": {"dist": "lognormal", "mean": 3, "sigma": -1}}},
     "traffic.duration.sigma = -1: must be >= 0"),
    ({"traffic": {"duration": {"dist": "pareto", "mean": 3, "alpha": 1}}},
     "traffic.duration.alpha = 1: must be > 1"),
    ({"traffic": {"duration": {"dist": "exponential", "mean": 3, "sigma": 1}}},
     "traffic.duration.sigma: unknown key"),
    ({"nat": {"port_min": 0}}, "nat.port_min = 0: must be an integer >= 1"),
    ({"nat": {"port_max": 70000}}, "nat.port_max = 70000: must be an integer <= 65535"),
    ({"nat": {"port_min": 5000, "port_max": 4000}}, "nat.port_min = 5000: must be <= nat.port_max"),
    ({"nat": {"per_destination_limit": 0}}, "nat.per_destination_limit = 0"),
    ({"nat": {"allocator": "roundrobin"}}, "nat.allocator = 'roundrobin': must be one of random"),
    ({"nat": {"ip_choice": "hash"}}, "nat.ip_choice = 'hash'"),
    ({"nat": {"ips": 1.5}}, "nat.ips = 1.5: must be an integer"),
    ({"nat": {"reuse_delay": -1}}, "nat.reuse_delay = -1"),
    ({"load_balancer": {"node_weights": [0.5, 0.5]}}, "load_balancer.node_weights = [0.5, 0.5]: must have one weight per node (3)"),
    ({"load_balancer": {"node_weights": [0.5, 0.6, -0.1]}}, "load_balancer.node_weights = -0.1: must be >= 0"),
    ({"load_balancer": {"node_weights": [0.5, 0.3, 0.3]}}, "must sum to 1"),
    ({"load_balancer": {"targets": [2, 2]}}, "load_balancer.targets = [2, 2]: a per-zone list needs one count per node (3)"),
    ({"load_balancer": {"targets": [2, 0, 1]}}, "load_balancer.targets = 0: must be an integer >= 1"),
    ({"load_balancer": {"targets": 2, "cross_zone": False}}, "every zone needs a target"),
    ({"load_balancer": {"cross_zone": "yes"}}, "load_balancer.cross_zone = 'yes': must be true or false"),
    ({"load_balancer": {"node_choice": "dns"}}, "load_balancer.node_choice = 'dns'"),
    ({"load_balancer": {"dns_ttl": 0}}, "load_balancer.dns_ttl = 0"),
    ({"target": {"on_collision": "ignore"}}, "target.on_collision = 'ignore'"),
    ({"target": {"server_close_fraction": 1.5}}, "target.server_close_fraction = 1.5: must be <= 1"),
    ({"target": {"time_wait": -1}}, "target.time_wait = -1"),
    ({"traffic": {"rte": 5}}, "traffic.rte: unknown key (did you mean 'rate'?)"),
    ({"lb": {}}, "lb: unknown key"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m[:40] for _, m in BAD])
def test_validation_api(data, message):
    with pytest.raises(ScenarioError) as exc:
        Scenario.from_dict(data)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def _toml(data) -> str:
    return Scenario.from_dict().to_toml() if data is None else "\n".join(
        f"[{sec}]\n" + "\n".join(f"{k} = {_v(v)}" for k, v in table.items())
        for sec, table in data.items())


def _v(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_v(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_v(x) for x in v) + "]"
    return repr(v)


@pytest.mark.parametrize("data,message", BAD, ids=[m[:40] for _, m in BAD])
def test_validation_cli(tmp_path, data, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(_toml(data))
    r = CliRunner().invoke(cli, ["simulate", "--config", str(cfg)], standalone_mode=False)
    assert r.exception is not None and getattr(r.exception, "exit_code", None) == 2
    assert message in r.exception.format_message()


def test_cli_exit_code_and_single_line_no_traceback(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[traffic]\nrate = -3\n")
    p = subprocess.run([sys.executable, "-m", "collide.cli", "simulate", "--config", str(cfg)],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "traffic.rate = -3: must be > 0" in lines[0]
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args,fragment", [
    (["--scenario", "sed"], "did you mean 'seed'"),
    (["--set", "nat.ipz=2"], "nat.ipz: unknown key"),
    (["--set", "nat.ips"], "must be KEY=VALUE"),
    (["--rate", "0"], "traffic.rate = 0.0: must be > 0"),
    (["--allocator", "round"], "nat.allocator = 'round'"),
    (["--config", "/nonexistent/x.toml"], "cannot read"),
    (["--scenario", "seed", "--config", "x.toml"], "give one, not both"),
    (["--backend", "gpu"], "--backend"),
])
def test_bad_flags_exit_2(args, fragment):
    p = subprocess.run([sys.executable, "-m", "collide.cli", "simulate", *args],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert fragment in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_not_valid_toml(tmp_path):
    cfg = tmp_path / "x.toml"
    cfg.write_text("[traffic\nrate = 1")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        Scenario.from_toml(cfg)


def test_defaults_match_design():
    d = Scenario.from_dict().to_dict()
    assert d["traffic"] == {"rate": 500.0, "duration": {"dist": "exponential", "mean": 30.0},
                            "horizon": 3600.0, "warmup": "auto", "clients": 1000}
    assert d["nat"] == {"ips": 1, "ip_choice": "per-connection", "port_min": 1024,
                        "port_max": 65535, "per_destination_limit": 55000,
                        "allocator": "random", "reuse_delay": 0.0}
    assert d["load_balancer"] == {"nodes": 3, "node_weights": [], "node_choice": "per-connection",
                                  "dns_ttl": 60.0, "targets": 6, "cross_zone": True,
                                  "client_ip_preservation": True}
    assert d["target"] == {"time_wait": 60.0, "server_close_fraction": 0.0,
                           "on_collision": "reset-existing"}


def test_builtins_and_round_trip(tmp_path):
    assert {"seed", "quiet", "exhaustion"} <= set(builtin_names())
    for name in builtin_names():
        s = Scenario.builtin(name)
        f = tmp_path / f"{name}.toml"
        f.write_text(s.to_toml())
        assert Scenario.from_toml(f) == s
    seed = Scenario.builtin("seed")
    assert seed.nat.ips == 1 and seed.load_balancer.nodes == 3 and seed.load_balancer.cross_zone
    assert seed.load_balancer.client_ip_preservation and seed.traffic.clients == 1


def test_replace_variants_are_immutable_and_validated():
    s = Scenario.builtin("seed")
    t = s.replace({"traffic.rate": 10}, nodes=2, nat_ips=4, traffic__horizon=5.0)
    assert (t.traffic.rate, t.load_balancer.nodes, t.nat.ips, t.traffic.horizon) == (10, 2, 4, 5.0)
    assert s.traffic.rate == 200.0
    u = s.replace({"traffic.duration.mean": 9.0})
    assert u.traffic.duration.dist == "exponential" and u.traffic.duration.mean == 9.0
    with pytest.raises(ScenarioError):
        s.replace(nodes=0)
    with pytest.raises(Exception):
        s.traffic.rate = 3  # frozen


def test_zone_targets_spread_evenly():
    s = Scenario.from_dict({"load_balancer": {"nodes": 3, "targets": 7}})
    assert s.load_balancer.zone_targets == (3, 2, 2)
