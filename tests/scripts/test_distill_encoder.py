"""scripts/distill_encoder.py on the bundled sample clip with a tiny teacher: it writes a
loadable student with the narrower blocks, the teacher's centroids and inference
settings, its loss log and the untrained start; a second run prunes that student further."""
import csv
from pathlib import Path

import pytest
import torch

from corrflow_napari.model import CorrFlowModel, EncoderConfig, InferenceSettings, load_model
from corrflow_napari.model.checkpoint import save_checkpoint

from .load import load_script

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "bigbuckbunny.mp4"


def test_distill_script_writes_a_loadable_student(tmp_path):
    torch.manual_seed(0)
    inference = InferenceSettings(metric="negsqdist", temperature=0.05, normalize=True,
                                  lab_weight=3.0, frame_bn=True, lab_mix=0.25)
    teacher = CorrFlowModel(EncoderConfig(width=0.125), centroids=torch.rand(16, 2),
                            inference=inference)
    save_checkpoint(tmp_path / "teacher.pt", teacher)
    out = tmp_path / "student.pt"
    rc = load_script("distill_encoder").main(
        [str(out), "--teacher", str(tmp_path / "teacher.pt"), "--inner", "1,1,0.5,0.5",
         "--steps", "3", "--batch", "2", "--crop", "32,48", "--short-side", "64",
         "--every", "10", "--videos", str(SAMPLE), "--save-init"])
    assert rc == 0
    student = load_model(str(out), device="cpu")
    assert student.config.inner == (1.0, 1.0, 0.5, 0.5)
    assert student.inference == inference
    assert torch.equal(student.centroids, teacher.centroids)
    assert load_model(str(tmp_path / "student-init.pt"), device="cpu").config.inner[3] == 0.5
    with open(out.with_suffix(".csv")) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["step", "loss", "seconds"] and len(rows) == 4
    # a narrower student pruned from that one, taught by the same teacher
    rc = load_script("distill_encoder").main(
        [str(tmp_path / "s2.pt"), "--teacher", str(tmp_path / "teacher.pt"), "--init", str(out),
         "--inner", "0.5,0.5,0.25,0.25", "--steps", "2", "--batch", "2", "--crop", "32,48",
         "--short-side", "64", "--every", "10", "--videos", str(SAMPLE), "--post-kernel", "1",
         "--device", "auto"])                   # a GPU when there is one (as gpu_session.sh)
    narrower = load_model(str(tmp_path / "s2.pt"), device="cpu")
    assert narrower.config.inner_channels()[3] < student.config.inner_channels()[3]
    assert narrower.config.post_kernel == 1 and narrower.encoder.post.kernel_size == (1, 1)


def test_no_frames_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="the frame pool is empty"):
        load_script("distill_encoder").main([str(tmp_path / "s.pt"), "--videos",
                                             str(tmp_path / "nothing*.mp4")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_absent_device_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="CUDA is not available on this machine"):
        load_script("distill_encoder").main([str(tmp_path / "s.pt"), "--device", "cuda"])
