"""Trust at the edges (issue 16): each class of hostile input, interruption and size, through the real
command line. Every bad case ends with exactly one line on stderr, its exit code (2 what the user gave,
3 what the machine lacks, 130 interrupted), before any work, and leaves the files as they were."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collide.files import OutputLock, check_output_file, clear_stale

SEED_FAST = ["--scenario", "seed", "--horizon", "5", "--seed", "1"]
SWEEP = """base = "seed"
seed = 1
[overrides]
"traffic.horizon" = 5
[axes]
"traffic.rate" = [100, 200, 400]
"nat.ips" = [1, 2]
"""


def run(*args, cwd=None, env=None, timeout=120):
    p = subprocess.run([sys.executable, "-m", "collide.cli", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture
def work(tmp_path):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    (tmp_path / "life.txt").write_text("1\n2\n3\n")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[traffic]\n")
    return tmp_path


# -- bad files: exit 2, one line, nothing run ------------------------------------------------------------
@pytest.mark.parametrize("case, needle", [
    (["simulate", "--config", "bin.toml"], "not UTF-8"),
    (["simulate", "--config", "/dev/zero"], "/dev/zero"),
    (["simulate", "--config", ""], "--config ''"),
    (["simulate", "--config", "nowhere.toml"], "cannot read"),
    (["simulate", "--horizon", "5", "--set",
      'traffic.duration={dist="empirical",file="/dev/zero"}'], "traffic.duration.file"),
    (["sweep", "bin.toml", "--out", "r.csv"], "not UTF-8"),
    (["plot", "bin.csv", "--x", "a", "--y", "b", "--out", "f.png"], "not UTF-8"),
    (["plot", "x.txt", "--x", "a", "--y", "b", "--out", "f.png"], "RESULTS x.txt"),
    (["plot", "damaged.csv", "--x", "a", "--y", "b", "--out", "f.png"], "line 2"),
    (["plot", "ragged.csv", "--x", "a", "--y", "b", "--out", "f.png"], "fields"),
    (["plot", "bad.jsonl", "--x", "a", "--y", "a", "--out", "f.png"], "line 2: not JSON"),
    (["plot", "list.jsonl", "--x", "a", "--y", "a", "--out", "f.png"], "expected one object"),
    (["plot", "fake.parquet", "--x", "a", "--y", "a", "--out", "f.png"], "not a Parquet file"),
    (["plot", "text.csv", "--x", "a", "--y", "b", "--out", "f.png"], "--y b: the column holds no numbers"),
])
def test_bad_files_exit_2(work, case, needle):
    (work / "bin.csv").write_bytes(b"a,b\n\xff,1\n")
    (work / "x.txt").write_text("a,b\n1,2\n")
    (work / "damaged.csv").write_text('a,b\n1,"x\n')
    (work / "ragged.csv").write_text("a,b\n1,2,3\n")
    (work / "bad.jsonl").write_text('{"a": 1}\n{bad\n')
    (work / "list.jsonl").write_text("[1, 2]\n3\n")
    (work / "fake.parquet").write_text("hello")
    (work / "text.csv").write_text("a,b\n1,x\n2,y\n")
    before = snapshot(work)
    rc, out, err = run(*case, cwd=work)
    assert rc == 2, err
    assert needle in one_line(err)
    assert snapshot(work) == before          # nothing written, nothing touched


@pytest.mark.parametrize("base, needle", [("5", "base = 5"), ('"seeed"', "did you mean 'seed'"),
                                          ('"nope/x.toml"', "no such scenario file")])
def test_sweep_base(work, base, needle):
    (work / "s.toml").write_text(f'base = {base}\n[axes]\n"traffic.rate" = [1]\n')
    rc, _, err = run("sweep", "s.toml", "--out", "r.csv", cwd=work)
    assert rc == 2 and needle in one_line(err)
    assert not (work / "r.csv").exists()


def test_duration_on_measured_lifetimes_names_the_flag(work):
    rc, _, err = run("simulate", "--horizon", "5", "--duration", "5", "--set",
                     f'traffic.duration={{dist="empirical",file="{work / "life.txt"}"}}', cwd=work)
    assert rc == 2 and one_line(err).startswith("collide: error: --duration 5: the lifetimes are measured")


def test_lifetimes_stream_with_line_numbers(work):
    (work / "l.txt").write_text("# lifetimes\n1.5\n\n2\nabc\n")
    rc, _, err = run("simulate", "--horizon", "5", "--set",
                     f'traffic.duration={{dist="empirical",file="{work / "l.txt"}"}}', cwd=work)
    assert rc == 2 and "line 5: 'abc' is not a number" in one_line(err)


def test_library_warnings_stay_quiet(work):
    rc, out, err = run("simulate", *SEED_FAST, "--format", "json", cwd=work)
    assert rc == 0 and err == "" and json.loads(out)["connections"] > 0


# -- output places: checked before the work ------------------------------------------------------------
@pytest.mark.parametrize("out, code, needle", [
    ("/proc/collide-x.csv", 2, "pseudo-filesystem"),
    ("adir.csv", 2, "is a directory"),
    ("afile.txt/r.csv", 2, "is a file"),
    ("x.txt", 2, "unknown format"),
])
def test_sweep_out_places(work, out, code, needle):
    (work / "adir.csv").mkdir()
    (work / "afile.txt").write_text("x")
    t0 = time.perf_counter()
    rc, _, err = run("sweep", "sweep.toml", "--out", out, cwd=work)
    assert rc == code and needle in one_line(err)
    assert time.perf_counter() - t0 < 10


def test_report_out_place_checked_before_the_simulations(work):
    (work / "afile").write_text("x")
    for out, needle in (("/proc/rep", "pseudo-filesystem"), ("afile/rep", "is a file")):
        t0 = time.perf_counter()
        rc, _, err = run("report", "--scenario", "seed", "--out", out, cwd=work)
        assert rc == 2 and needle in one_line(err)
        assert time.perf_counter() - t0 < 5          # refused before any simulation


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only place needs root (a read-only mount)")
def test_read_only_and_full_places(tmp_path):
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir()
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount here")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
        with open(full / "fill", "wb") as fh:
            try:
                fh.write(b"\0" * 200_000)
            except OSError:
                pass
        (tmp_path / "sweep.toml").write_text(SWEEP)
        rc, _, err = run("sweep", "sweep.toml", "--out", ro / "r.csv", cwd=tmp_path)
        assert rc == 2 and "Read-only" in one_line(err)
        rc, _, err = run("sweep", "sweep.toml", "--out", full / "r.csv", cwd=tmp_path)
        assert rc == 3 and "no space left" in one_line(err)
        rc, _, err = run("report", "--scenario", "seed", "--out", full / "rep", cwd=tmp_path)
        assert rc == 3 and "no space left" in one_line(err)
        assert sorted(os.listdir(full)) == ["fill"]          # no partial file, no temporary
    finally:
        subprocess.run(["umount", str(ro)])
        subprocess.run(["umount", str(full)])


def test_plot_writes_all_or_nothing(work):
    rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", "--workers", "1", cwd=work)
    assert rc == 0, err
    rc, _, err = run("plot", "r.csv", "--x", "traffic.rate", "--y", "collisions_per_hour",
                     "--out", "adir/f.png", cwd=work)
    assert rc == 0 and (work / "adir" / "f.png").stat().st_size > 1000
    assert not [p for p in os.listdir(work / "adir") if "collide-tmp" in p]


def test_stale_temporaries_are_cleared(tmp_path):
    out = tmp_path / "rep"
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / f".rep.collide-tmp-{dead.pid}-abcd1234"
    left.mkdir()
    (left / "index.html").write_text("half")
    mine = tmp_path / f".rep.collide-tmp-{os.getpid()}-abcd1234"
    mine.mkdir()
    assert clear_stale(out) == 1
    assert not left.exists() and mine.exists()


def test_output_check_refuses_devices_and_folders(tmp_path):
    from collide.errors import InputError
    with pytest.raises(InputError, match="is a directory"):
        check_output_file(tmp_path)
    with pytest.raises(InputError, match="pseudo-filesystem"):
        check_output_file("/dev/full")


# -- sweeps: outputs kept, one writer ----------------------------------------------------------------------
def test_sweep_keeps_an_existing_out(work):
    rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", "--workers", "1", cwd=work)
    assert rc == 0, err
    before = (work / "r.csv").read_bytes()
    rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", cwd=work)
    assert rc == 2 and "--resume" in one_line(err) and "--overwrite" in err
    assert (work / "r.csv").read_bytes() == before
    rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", "--resume", cwd=work)
    assert rc == 0 and "6 already there" in err
    rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", "--overwrite", "--workers", "1", cwd=work)
    assert rc == 0 and (work / "r.csv").read_text().count("\n") == 7


def test_second_writer_is_refused(work):
    with OutputLock(work / "r.csv"):
        rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", cwd=work)
    assert rc == 3 and "another collide run is writing it" in one_line(err)
    assert not (work / "r.csv").exists()
    rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", "--workers", "1", cwd=work)
    assert rc == 0, err                     # the lock went with its holder


def test_workers_capped_at_the_points(work):
    rc, _, err = run("sweep", "sweep.toml", "--out", "r.csv", "--workers", "1000", cwd=work)
    assert rc == 0 and "so 6 process(es)" in err


# -- sizes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, code, needle", [
    (["--set", "nat.ips=4096", "--nodes", "64"], 3, "nat.ips x load_balancer nodes x NAT ports"),
    (["--rate", "1e12"], 3, "traffic.rate x mean lifetime"),
    (["--duration", "1e9"], 3, "traffic.rate x mean lifetime"),
    (["--horizon", "1e15"], 2, "traffic.rate x traffic.horizon"),
])
def test_absurd_sizes_refused_before_work(args, code, needle):
    t0 = time.perf_counter()
    rc, _, err = run("simulate", "--scenario", "seed", *args)
    assert rc == code and needle in one_line(err) and "--force" in err
    assert time.perf_counter() - t0 < 10


def test_large_grid_and_replicates_refused_at_once(work):
    (work / "big.toml").write_text('base = "seed"\n[axes]\n"traffic.rate" = { linspace = [100, 200, '
                                   '10000] }\n"nat.ips" = { range = [1, 1001] }\n')
    (work / "reps.toml").write_text('base = "seed"\nreplicates = 100000000\n[axes]\n'
                                    '"traffic.rate" = [100]\n')
    for f, needle in (("big.toml", "1e7 points"), ("reps.toml", "1e8 replicate")):
        t0 = time.perf_counter()
        rc, _, err = run("sweep", f, "--out", "r.csv", cwd=work)
        assert rc == 2 and needle in one_line(err)
        assert time.perf_counter() - t0 < 10
    rc, _, err = run("first-reset", "--scenario", "seed", "--replicates", "100000000")
    assert rc == 2 and "--replicates" in one_line(err)


def test_large_feasible_run_states_its_estimate():
    from collide.scenario import Scenario
    from collide.sizing import check, size_runs
    said = []
    s = Scenario.builtin("seed").replace({"nat.ips": 1024})       # 2.4 GB of port slots: fits
    check(size_runs("simulate", s), echo=said.append)
    assert len(said) == 1 and said[0].startswith("simulate: about") and "GiB of memory" in said[0]
    said.clear()
    check(size_runs("simulate", Scenario.builtin("seed")), echo=said.append)
    assert said == []                                           # a small run says nothing


@pytest.mark.slow
def test_large_feasible_run_states_its_estimate_on_stderr():
    rc, _, err = run("simulate", "--scenario", "seed", "--horizon", "5", "--set", "nat.ips=1024",
                     "--seed", "1", "--format", "json")
    assert rc == 0 and err.startswith("simulate: about") and "GiB of memory" in err


def test_lifetimes_file_is_streamed(tmp_path):
    from collide.scenario import Scenario
    f = tmp_path / "many.txt"
    f.write_text("\n".join(str(1 + i % 7) for i in range(300_000)) + "\n")
    s = Scenario.from_dict({"traffic": {"duration": {"dist": "empirical", "file": str(f)}}})
    assert len(s.traffic.duration.values) == 300_000 and s.traffic.duration.mean == pytest.approx(
        sum(1 + i % 7 for i in range(300_000)) / 300_000)


# -- the lab without what it needs ------------------------------------------------------------------------
def test_lab_without_packages_exits_3(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    rc, _, err = run("lab", "--seconds", "2", env=env)
    line = one_line(err)
    assert rc == 3 and ("apt-get install" in line or "needs root" in line)


# -- Ctrl-C --------------------------------------------------------------------------------------------
def _interrupt(args, cwd, after: float, timeout: float = 30):
    p = subprocess.Popen([sys.executable, "-m", "collide.cli", *map(str, args)], cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    time.sleep(after)
    os.killpg(p.pid, signal.SIGINT)          # what a terminal's Ctrl-C does: the whole group
    t0 = time.perf_counter()
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err, time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_report_writes_no_page(work, workers):
    rc, out, err, took = _interrupt(["report", "--scenario", "seed", "--out", "rep", "--seed", "1",
                                     "--workers", workers, "--horizon", "6000"], work, after=2.0)
    assert rc == 130, err
    assert not (work / "rep").exists()
    assert not [p for p in os.listdir(work) if "collide-tmp" in p]


@pytest.mark.slow
def test_ctrl_c_first_reset_is_not_swallowed(work):
    rc, out, err, took = _interrupt(["first-reset", "--scenario", "seed", "--replicates", "20000",
                                     "--seed", "1", "--format", "json", "--workers", "2"], work,
                                    after=2.0)
    assert rc == 130 and out == "", (rc, out, err)
    assert took < 5


@pytest.mark.slow
def test_killed_sweep_leaves_no_workers(work):
    (work / "slow.toml").write_text('base = "seed"\n[overrides]\n"traffic.horizon" = 20000\n'
                                    '[axes]\n"traffic.rate" = [100, 200, 300, 400]\n')
    p = subprocess.Popen([sys.executable, "-m", "collide.cli", "sweep", "slow.toml", "--out",
                          "r.csv", "--workers", "2"], cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    children: list[int] = []
    for _ in range(100):
        time.sleep(0.1)
        try:
            children = [int(x) for x in
                        Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        except OSError:
            children = []
        if len(children) >= 2:
            break
    assert children, "the sweep started no workers"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(Path(f"/proc/{c}").exists() and
                                         "Z" not in Path(f"/proc/{c}/stat").read_text().split()[2]
                                         for c in children):
        time.sleep(0.1)
    alive = [c for c in children if Path(f"/proc/{c}").exists()
             and Path(f"/proc/{c}/stat").read_text().split()[2] != "Z"]
    assert not alive


@pytest.mark.slow
def test_ctrl_c_sweep_keeps_finished_rows(work):
    (work / "s.toml").write_text('base = "seed"\nseed = 3\n[overrides]\n"traffic.horizon" = 3000\n'
                                 '[axes]\n"traffic.rate" = { linspace = [100, 400, 60] }\n')
    rc, out, err, took = _interrupt(["sweep", "s.toml", "--out", "r.csv", "--workers", "2"], work,
                                    after=2.5)
    assert rc == 130 and "--resume" in err
    rows = (work / "r.csv").read_text().splitlines()
    assert rows[0].startswith("traffic.rate,")
    rc, _, err = run("sweep", "s.toml", "--out", "r.csv", "--resume", cwd=work)
    assert rc == 0 and (work / "r.csv").read_text().count("\n") == 61


# -- notebooks are committed with their outputs -------------------------------------------------------------
@pytest.mark.parametrize("name", ["01-field-report.ipynb", "02-capacity-planning.ipynb"])
def test_notebooks_carry_their_figures(name):
    nb = json.loads((Path(__file__).parent.parent / "notebooks" / name).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "run the notebook and save it"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))
    assert not any(o.get("name") == "stderr" or o.get("output_type") == "error"
                   for c in code for o in c.get("outputs", []))
