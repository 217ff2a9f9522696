#!/usr/bin/env bash
# A second device call of a GPU session (issue 14), while the machine is still warm after
# scripts/gpu_session.sh: distil the teacher it trained (runs/gpu/last.pt, still on that
# machine) into the shipped student's architecture, on the GPU, from the training bundle
# (runs/bundle, carried by the first call and still there; frames at a 256-pixel short
# side, so the crops show more of each scene than the CPU recipe's 480-pixel frames do):
#   bash scripts/gpu_distill.sh $OUT [STEPS]            (device tool, timeout ~300 s)
# Back here: python scripts/dev_check.py OUT/student.pt, and against the shipped file.
# The CPU recipe (README "A distilled encoder", 2000 steps, ~17 min) is the fallback.
# Dry run here: DEVICE=cpu TEACHER=checkpoints/latest.pt bash scripts/gpu_distill.sh /tmp/d 2
set -u -o pipefail
out=${1:?usage: scripts/gpu_distill.sh OUT_DIR [STEPS]}
steps=${2:-2000}
py=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$out"
"$py" scripts/distill_encoder.py "$out/student.pt" --teacher "${TEACHER:-runs/gpu/last.pt}" \
    --init corrflow_napari/weights/corrflow_default.pt --inner 0.25,0.25,0.25,0.25 \
    --steps "$steps" --lr 1e-3 --device "${DEVICE:-cuda}" --videos 'runs/bundle/*/' --short-side 256 \
    --every 1 2>&1 | tee "$out/distill.log"
