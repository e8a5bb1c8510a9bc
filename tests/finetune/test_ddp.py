"""Two CPU processes under torchrun (gloo): DistributedDataParallel training, rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from breastclip.predictions import validate_predictions

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_processes(tiny, tmp_path):
    manifest_csv = tiny.to_csv(tmp_path / "manifest.csv")
    script = tmp_path / "run_ddp.py"
    script.write_text(textwrap.dedent(f"""
        import torch.distributed as dist
        from breastclip.data.manifest import Manifest
        from breastclip.finetune import FinetuneConfig, finetune
        res = finetune(Manifest.from_csv({str(manifest_csv)!r}),
                       FinetuneConfig(arch="resnet18", pretrained=False, image_size=32, batch_size=4, epochs=2),
                       {str(tmp_path / "run")!r})
        print("RANK_DONE", len(res.predictions), res.best_epoch, flush=True)
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("RANK_DONE") == 2
    pred = validate_predictions(pd.read_csv(tmp_path / "run" / "predictions.csv"))
    assert len(pred) == int((tiny.df["split"] != "train").sum())
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(hist["epoch"]) == [1, 2]
    assert (tmp_path / "run" / "config.json").read_text().count('"world_size": 2') == 1
