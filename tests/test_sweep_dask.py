"""A sweep on a real Dask cluster (scheduler and workers in their own processes) gives the local rows."""
from __future__ import annotations

import pytest

import collide
from collide.sweep import read_rows

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.dask, pytest.mark.slow]

AXES = {"traffic.rate": [50, 200], "nat.ips": [1, 2], "load_balancer.cross_zone": [True, False]}
FAST = {"traffic.horizon": 5.0}


def strip(rows):
    return sorted(({k: v for k, v in r.items() if k != "elapsed_s"} for r in rows), key=lambda r: r["seed"])


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


def test_dask_executor_gives_the_local_rows(cluster, tmp_path):
    local = collide.sweep("seed", AXES, overrides=FAST, replicates=2, seed=9, workers=1)
    with distributed.Client(cluster) as client:
        got = collide.sweep("seed", AXES, overrides=FAST, replicates=2, seed=9,
                            executor=client.get_executor(), out=tmp_path / "d.csv")
    assert strip(got.rows) == strip(local.rows)
    assert strip(read_rows(tmp_path / "d.csv")) == strip(local.rows)


def test_cli_scheduler_flag(cluster, tmp_path):
    from click.testing import CliRunner
    from collide.cli import cli
    sweep = tmp_path / "s.toml"
    sweep.write_text('seed = 9\n[overrides]\n"traffic.horizon" = 5\n[axes]\n"traffic.rate" = [50, 200]\n'
                     '"nat.ips" = [1, 2]\n')
    out = tmp_path / "d.jsonl"
    res = CliRunner().invoke(cli, ["sweep", str(sweep), "--out", str(out), "--scheduler",
                                   cluster.scheduler_address])
    assert res.exit_code == 0, res.output
    local = collide.sweep("seed", {"traffic.rate": [50, 200], "nat.ips": [1, 2]}, overrides=FAST, seed=9,
                          workers=1)
    assert strip(read_rows(out)) == strip(local.rows)
