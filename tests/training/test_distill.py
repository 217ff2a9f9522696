"""Distilling the encoder into narrower blocks: the pruned start keeps the teacher when
nothing is pruned, the narrower encoder saves and loads, the per-frame forward with
autograd is what inference computes, and distillation brings the student's features
towards the teacher's."""

import numpy as np
import pytest
import torch

from corrflow_napari.errors import InputError
from corrflow_napari.model import CorrFlowEncoder, CorrFlowModel, EncoderConfig
from corrflow_napari.model.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from corrflow_napari.training.distill import (
    DistillConfig,
    FramePool,
    cosine_distance,
    distill,
    pruned_student,
)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    enc = CorrFlowEncoder(EncoderConfig(width=0.25))
    for bn in (m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return enc.eval()


def textured_frames(texture, n=6, h=48, w=64):
    """``n`` uint8 (h, w, 3) views of one smooth texture, each shifted a little from the last."""
    base = np.rint(texture(h + 2 * n, w + n)).astype(np.uint8)
    return [torch.from_numpy(np.ascontiguousarray(base[2 * i:2 * i + h, i:i + w]))
            for i in range(n)]


def test_pruning_nothing_keeps_the_teacher(teacher):
    x = torch.rand(2, 3, 40, 56)
    student = pruned_student(teacher, (1, 1, 1, 1), x).eval()
    torch.testing.assert_close(student.infer(x, frame_bn=True), teacher.infer(x, frame_bn=True))


def test_narrower_blocks_are_cheaper_and_round_trip_through_a_checkpoint(teacher, tmp_path):
    x = torch.rand(2, 3, 40, 56)
    student = pruned_student(teacher, (1, 1, 0.5, 0.5), x).eval()
    assert student.layer3[1].conv1.out_channels == teacher.layer3[1].conv1.out_channels // 2
    assert student.layer3[1].conv2.out_channels == teacher.layer3[1].conv2.out_channels
    n_s = sum(p.numel() for p in student.parameters())
    assert n_s < 0.7 * sum(p.numel() for p in teacher.parameters())
    model = CorrFlowModel(student.config)
    model.encoder.load_state_dict(student.state_dict())
    save_checkpoint(tmp_path / "s.pt", model)
    back = model_from_checkpoint(read_checkpoint(tmp_path / "s.pt")).eval()
    assert back.config.inner == (1.0, 1.0, 0.5, 0.5)
    torch.testing.assert_close(back.encoder.infer(x, True), student.infer(x, True))


def test_a_student_cannot_be_wider_than_what_it_is_pruned_from(teacher):
    x = torch.rand(1, 3, 40, 56)
    narrow = pruned_student(teacher, (1, 1, 0.5, 0.5), x)
    with pytest.raises(ValueError, match="wider than the network pruned from"):
        pruned_student(narrow, (1, 1, 1, 0.5), x)


def test_a_1x1_output_convolution_starts_as_the_3x3_on_flat_features(teacher, tmp_path):
    """``post_kernel`` 1: the student's output convolution is the sum of the teacher's taps,
    equal to it wherever the features are locally constant; it is 9x cheaper, saves and
    loads, and cannot grow back."""
    x = torch.rand(2, 3, 40, 56)
    student = pruned_student(teacher, (1, 1, 1, 1), x, post_kernel=1).eval()
    assert student.post.kernel_size == (1, 1) and student.config.post_kernel == 1
    flat = torch.randn(1, teacher.post.in_channels, 9, 11).mean((2, 3), keepdim=True)
    flat = flat.expand(1, -1, 9, 11)
    torch.testing.assert_close(student.post(flat)[..., 1:-1, 1:-1],
                               teacher.post(flat)[..., 1:-1, 1:-1])
    model = CorrFlowModel(student.config)
    model.encoder.load_state_dict(student.state_dict())
    save_checkpoint(tmp_path / "s.pt", model)
    back = model_from_checkpoint(read_checkpoint(tmp_path / "s.pt")).eval()
    torch.testing.assert_close(back.encoder.infer(x, True), student.infer(x, True))
    with pytest.raises(ValueError, match="post_kernel 3 is larger"):
        pruned_student(student, (1, 1, 1, 1), x, post_kernel=3)
    with pytest.raises(ValueError, match="post_kernel"):
        EncoderConfig(post_kernel=5)


def test_inner_fractions_are_checked():
    with pytest.raises(ValueError, match="inner"):
        EncoderConfig(inner=(1, 1, 0))
    with pytest.raises(ValueError, match="inner"):
        EncoderConfig(inner=(1, 1, 1, 1.5))


def test_a_checkpoint_with_bad_inner_is_a_clear_error(teacher, tmp_path):
    save_checkpoint(tmp_path / "t.pt", CorrFlowModel(teacher.config))
    obj = read_checkpoint(tmp_path / "t.pt")
    obj["encoder_config"]["inner"] = [1, 1, 0.5, 0.5]      # weights of the full-width blocks
    with pytest.raises(InputError, match="does not match the CorrFlow encoder"):
        model_from_checkpoint(obj)


def test_frame_bn_forward_with_autograd_is_what_inference_computes(teacher):
    x = torch.rand(3, 3, 40, 56)
    out = teacher(x, frame_bn=True)
    torch.testing.assert_close(out.detach(), teacher.infer(x, frame_bn=True),
                               rtol=1e-4, atol=1e-4)
    student = pruned_student(teacher, (1, 1, 0.5, 0.5), x).train()
    student(x, frame_bn=True).square().mean().backward()
    assert student.layer4[1].conv1.weight.grad is not None


def test_crops_have_the_size_asked_for(texture):
    pool = FramePool(textured_frames(texture, 3, 30, 40))      # smaller than the crop: scaled up
    crops = pool.crops(5, (32, 48), np.random.default_rng(0))
    assert crops.shape == (5, 3, 32, 48)
    assert 0 <= crops.min() and crops.max() <= 1


def test_distillation_brings_the_student_towards_the_teacher(teacher, texture):
    pool = FramePool(textured_frames(texture))
    x = pool.crops(4, (48, 64), np.random.default_rng(5), zoom=(1, 1))
    student = pruned_student(teacher, (0.5, 0.5, 0.5, 0.5), x)

    def gap(enc):
        return float(cosine_distance(enc.eval().infer(x, True), teacher.infer(x, True)))

    before = gap(student)
    result = distill(teacher, student, pool, DistillConfig(steps=40, batch=4, crop=(48, 64),
                                                           lr=3e-3))
    assert len(result.losses) == 40
    assert gap(result.student) < 0.5 * before
    assert gap(student) == pytest.approx(before)      # the argument is untouched
