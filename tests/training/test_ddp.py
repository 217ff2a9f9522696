"""DistributedDataParallel training under torchrun: 2 CPU processes, gloo on loopback.

The test launches this very file as the torchrun script (``__main__`` = worker): every
rank trains a few steps with ``corrflow_napari.training`` and writes a hash of its final
encoder state (parameters + BatchNorm buffers) and its first loss; the ranks must end
with identical weights while having sampled different clips, and only rank 0 writes
the checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_ranks_identical_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(Path(__file__).resolve()), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["hash"] == r1["hash"]                     # DDP kept the replicas identical
    assert r0["first_loss"] != r1["first_loss"]         # ... while sampling different clips
    assert r0["steps"] == r1["steps"] == 3
    assert (tmp_path / "ddp.pt").exists()               # only rank 0 writes checkpoints
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.pt", "rank0.json",
                                                          "rank1.json"]
    from corrflow_napari.model import read_checkpoint
    ck = read_checkpoint(tmp_path / "ddp.pt")
    assert ck["step"] == 3 and ck["world_size"] == 2
    h = hashlib.sha256()
    for k in sorted(ck["encoder"]):
        h.update(k.encode())
        h.update(ck["encoder"][k].numpy().tobytes())
    assert h.hexdigest() == r0["hash"]


def _worker(out_dir: str) -> None:
    import torch
    import torch.nn.functional as F

    from corrflow_napari.training import TrainConfig
    from corrflow_napari.training.loop import _train

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    big = torch.rand(1, 3, 20, 20, generator=g)
    big = F.interpolate(big, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)[0]
    video = np.stack([(big[:, k:k + 80, 2 * k:2 * k + 80].permute(1, 2, 0) * 255)
                      .round().to(torch.uint8).numpy() for k in range(10)])
    cfg = TrainConfig(crop=48, batch=2, width=0.25, iters=3, interval=1, save_every=2,
                         log_every=1, centroid_clips=2)
    res = _train([video], Path(out_dir) / "ddp.pt", cfg, device="cpu",
                    log=lambda m: print(m, flush=True))
    h = hashlib.sha256()
    state = res.model.encoder.state_dict()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().numpy().tobytes())
    rank = int(os.environ["RANK"])
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(
        {"hash": h.hexdigest(), "first_loss": res.losses[0], "steps": res.step,
         "world": int(os.environ["WORLD_SIZE"])}))


if __name__ == "__main__":
    _worker(sys.argv[1])
