#!/usr/bin/env bash
# One GPU session's work, as one device call (issues 14, 16): continue the accumulating
# checkpoint for TRAIN_MINUTES, then time propagation on the GPU (the shipped default
# first: the distilled student with the video's BatchNorm statistics has not yet run on one).
#
# Prepare here first (both folders are git-ignored; carry them):
#   python scripts/build_training_bundle.py runs/bundle \
#       ../shared/data/davis2016-train/JPEGImages/480p/* ../shared/data/clips/*.mp4
#   for s in libby blackswan; do for d in JPEGImages Annotations; do
#       mkdir -p runs/davis-mini/$d/480p; cp -r ../shared/data/davis2016-dev/$d/480p/$s runs/davis-mini/$d/480p/
#   done; done
# Then, on the GPU machine (device tool: carry ["runs/bundle", "runs/davis-mini"]):
#   TRAIN_ARGS="--lr-scale 0.25" bash scripts/gpu_session.sh $OUT 6
# (TRAIN_ARGS: more train_gpu.py options; at lr-scale 1 the second run, from the default
# weights, lost 1.5 dev J&F: README "The second GPU run")
# and here: python scripts/dev_check.py OUT/export.pt --reference checkpoints/latest.pt --alone
# If it wins, it becomes checkpoints/latest.pt (the teacher, full blocks); the shipped default
# is a distilled student of it, so distil again before shipping (README "A distilled encoder").
# On the GPU, as a second call while the machine is warm: bash scripts/gpu_distill.sh $OUT
# (a minute or two there, from runs/gpu/last.pt), or here on the CPU (~17 min):
#   python scripts/distill_encoder.py runs/distill/new.pt --teacher checkpoints/latest.pt \
#       --init corrflow_napari/weights/corrflow_default.pt --inner 0.25,0.25,0.25,0.25 --steps 2000 --lr 1e-3
#   python scripts/dev_check.py runs/distill/new.pt
# The dev check can also run there, in a second call while the machine is warm (runs/gpu
# stays; bundle and dev together exceed the 64 MiB a call carries): copy
# ../shared/data/davis2016-dev (JPEGImages, Annotations, ImageSets) to runs/davis-dev, then
# with carry ["runs/davis-dev"]: python3 scripts/dev_check.py runs/gpu/last.pt \
#   --reference checkpoints/latest.pt --root runs/davis-dev --cache $OUT/devcheck --jobs 1
# (542 frames a model; ~100 frames/s there). Not yet run on a GPU.
set -u -o pipefail
out=${1:?usage: scripts/gpu_session.sh OUT_DIR [TRAIN_MINUTES]}
minutes=${2:-6}
py=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$out/gpu.txt" 2>&1
"$py" scripts/train_gpu.py runs/bundle runs/gpu --init checkpoints/latest.pt \
    --minutes "$minutes" --iters 0 --log-every 50 --export "$out/export.pt" ${TRAIN_ARGS:-} 2>&1 \
    | tee "$out/train.log"
cp runs/gpu/loss.csv "$out/" 2>/dev/null
timeout 150 "$py" scripts/gpu_check.py runs/davis-mini --frames "${FRAMES:-1000}" \
    --model corrflow_napari/weights/corrflow_default.pt --model checkpoints/latest.pt \
    --model "$out/export.pt" --model lab --skip-far auto,on --encode-batch 8,1 --profile 20 2>&1 \
    | tee "$out/gpu_check.log"
