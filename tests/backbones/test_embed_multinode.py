"""Multi-node extraction, simulated on localhost: two torchrun agents (node ranks 0 and 1, one process each) meet
through a c10d rendezvous and gloo, exactly as ``srun torchrun --nnodes 2 ...`` does on a cluster (see
docs/multinode.md); then one rank is killed mid-run and the rerun reuses every shard that was committed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from backbone_fixtures import make_manifest

from breastclip.backbones import embed_manifest

SRC = Path(__file__).resolve().parents[2] / "src"

# One rank's program: optional slowdown (so a kill lands mid-run), its pid for the test, the library call, and on
# rank 0 the result. Everything else (hashing, sharding, cache, rendezvous) is the library's own.
_WORKER = """
import json, os, sys, time
import numpy as np
from breastclip.backbones import base, embed_manifest
from breastclip.data.manifest import Manifest

out = sys.argv[2]
rank = int(os.environ["RANK"])
with open(os.path.join(out, f"pid-{os.environ['GROUP_RANK']}-{rank}"), "w") as f:
    f.write(str(os.getpid()))
skew = float(os.environ.get("BC_TEST_SKEW", "0"))
if skew and rank == 1:  # a slow node: it reads the cache index only after rank 0 has committed batches
    from breastclip.backbones.cache import EmbeddingCache
    orig_missing = EmbeddingCache.missing
    def late(self, keys):
        time.sleep(skew)
        return orig_missing(self, keys)
    EmbeddingCache.missing = late
delay = float(os.environ.get("BC_TEST_DELAY", "0"))
if delay:
    orig = base.Backbone.encode_tensor
    def slow(self, x):
        time.sleep(delay)
        return orig(self, x)
    base.Backbone.encode_tensor = slow
m = Manifest.from_csv(sys.argv[1])
res = embed_manifest(m, "tiny-test", cache_dir=sys.argv[3], batch_size=2, num_workers=0, device="cpu",
                     progress=False)
if rank == 0:
    np.savez(os.path.join(out, "result.npz"), X=res.X, ids=np.array(res.ids))
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump({"n_computed": res.n_computed, "n_cached": res.n_cached, "world": int(os.environ["WORLD_SIZE"]),
                   "failures": len(res.failures)}, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two_nodes(tmp_path: Path, csv: Path, cache: Path, out: Path, delay: float = 0.0,
                      skew: float = 0.0) -> list:
    """Start two torchrun agents, node rank 0 and 1, one worker each, c10d rendezvous on a free localhost port."""
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "BC_TEST_DELAY": str(delay),
           "BC_TEST_SKEW": str(skew),
           "TORCHELASTIC_ERROR_FILE": ""}
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
               "--rdzv-id", f"bc-test-{port}", "--max-restarts", "0", "--rdzv-conf", "join_timeout=120",
               str(script), str(csv), str(out), str(cache)]
        log = open(out / f"node{node}.log", "w")  # closed in _wait
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log))
    return procs


def _wait(procs, timeout: float) -> list[int]:
    """Exit codes of both agents; kills the process groups of any still running after ``timeout``."""
    deadline = time.time() + timeout
    codes = []
    for p, log in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.time())))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            codes.append(p.wait())
        log.close()
    return codes


def _logs(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(out.glob("node*.log")))


def _shards(cache: Path) -> dict[str, set[str]]:
    by_rank: dict[str, set[str]] = {}
    for p in cache.glob("embeddings/*/shards/r*.parquet"):
        by_rank.setdefault(p.name[:4], set()).add(p.stem)
    return by_rank


@pytest.fixture
def csv(tmp_path):
    m = make_manifest(tmp_path / "images", n=14, bad=False)
    path = tmp_path / "m.csv"
    m.to_csv(path)
    return path, m


@pytest.mark.slow
def test_two_nodes_on_localhost_equal_single_process(tmp_path, csv):
    path, m = csv
    out, cache = tmp_path / "run", tmp_path / "cache"
    # rank 1 reads the cache late (skew): the ranks must still split one list, none skipped, none doubled
    codes = _wait(_launch_two_nodes(tmp_path, path, cache, out, skew=3.0), timeout=240)
    assert codes == [0, 0], _logs(out)
    assert len(list(out.glob("pid-*"))) == 2, "two node ranks, one process each"
    assert set(_shards(cache)) == {"r000", "r001"}, "each node's rank wrote its own shards"
    info = json.loads((out / "result.json").read_text())
    assert info == {"n_computed": 14, "n_cached": 0, "world": 2, "failures": 0}
    single = embed_manifest(m, "tiny-test", cache_dir=tmp_path / "single", num_workers=0, progress=False)
    with np.load(out / "result.npz") as z:
        assert z["ids"].tolist() == single.ids
        np.testing.assert_allclose(z["X"], single.X, atol=1e-6)


@pytest.mark.slow
def test_killed_rank_then_rerun_reuses_surviving_shards(tmp_path, csv):
    path, m = csv
    out, cache = tmp_path / "run1", tmp_path / "cache"
    procs = _launch_two_nodes(tmp_path, path, cache, out, delay=0.4)
    victim_pid = None
    deadline = time.time() + 180
    while time.time() < deadline and all(p.poll() is None for p, _ in procs):
        pids = {f.name: f.read_text() for f in out.glob("pid-*") if f.read_text()}
        shards = _shards(cache)
        if len(pids) == 2 and len(shards.get("r001", ())) >= 2 and len(shards.get("r000", ())) >= 1:
            victim_pid = int(next(v for k, v in pids.items() if k.endswith("-1")))  # global rank 1
            os.kill(victim_pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    codes = _wait(procs, timeout=180)
    assert victim_pid is not None, "rank 1 was never caught mid-run\n" + _logs(out)
    assert codes != [0, 0], "the run with a killed rank must fail\n" + _logs(out)
    assert not (out / "result.json").exists()
    survived = set().union(*_shards(cache).values())
    assert 3 <= len(survived) < 8, f"killed mid-run: {len(survived)} of 8 batches committed"

    out2 = tmp_path / "run2"
    codes = _wait(_launch_two_nodes(tmp_path, path, cache, out2), timeout=240)
    assert codes == [0, 0], _logs(out2)
    info = json.loads((out2 / "result.json").read_text())
    assert info["n_cached"] >= len(survived) and info["n_computed"] >= 1, info
    assert info["n_cached"] + info["n_computed"] == 14 and info["failures"] == 0, info
    assert survived <= set().union(*_shards(cache).values()), "the committed shards were reused, not rewritten"
    clean = embed_manifest(m, "tiny-test", cache_dir=tmp_path / "clean", num_workers=0, progress=False)
    with np.load(out2 / "result.npz") as z:
        assert z["ids"].tolist() == clean.ids
        bad = np.flatnonzero(np.abs(z["X"] - clean.X).max(1) > 1e-6)
        assert not len(bad), _where(cache, m, bad) + "\n" + _logs(out) + _logs(out2)


def _where(cache: Path, m, rows) -> str:
    """For a failure message: the shard (and so the run and rank) each differing row was read from."""
    import pandas as pd

    from breastclip.backbones.hashing import file_hash

    idx = pd.concat([pd.read_parquet(p) for p in cache.glob("embeddings/*/shards/*.parquet")])
    paths = m.paths()
    return "; ".join(f"row {r} ({paths[r].name}): {idx[idx['key'] == file_hash(paths[r])].to_dict('records')}"
                     for r in rows)


def test_slurm_example_parses_as_torchrun_and_breastclip_embed(tmp_path):
    """The documented sbatch line is a valid torchrun command whose program is a valid ``breastclip embed`` call."""
    import shlex

    import typer
    from torch.distributed.run import get_args_parser

    from breastclip.backbones import get_entry
    from breastclip.cli import app

    text = (SRC.parent / "examples" / "slurm_embed.sbatch").read_text()
    assert text in (SRC.parent / "docs" / "multinode.md").read_text(), "docs/multinode.md shows the file as it is"
    line = text[text.index("srun torchrun"):].replace("\\\n", " ")
    line = line.replace('"$SLURM_NNODES"', "4").replace('"$head:$port"', "node1:29500").replace('"$SLURM_JOB_ID"', "7")
    argv = shlex.split(line)[2:]
    args = get_args_parser().parse_args(argv)
    assert args.module and args.training_script == "breastclip" and args.nnodes == "4"
    assert args.rdzv_backend == "c10d" and args.max_restarts == 0
    prog = args.training_script_args
    assert prog[0] == "embed"
    cmd = typer.main.get_command(app).commands["embed"]
    (tmp_path / "manifest.csv").write_text("id,image,label\n")  # the CLI checks the file exists
    argv = [str(tmp_path / a) if a == "manifest.csv" else a for a in prog[1:]]
    ctx = cmd.make_context("embed", argv, resilient_parsing=False)
    get_entry(ctx.params["backbone"])  # a registered name
    assert ctx.params["cache_dir"] is not None and ctx.params["overwrite"]
