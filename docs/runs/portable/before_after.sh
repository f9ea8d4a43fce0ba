#!/bin/bash
# Before and after portable coding, the same run, the same machine: OLD_PYTHON is the python of a
# venv holding d13001a (the revision before it; `acnkit bench versus d13001a --cache DIR` makes
# one under DIR/<commit>/venv), RUN a run folder that revision trained, e.g.
#   $OLD_PYTHON -m acnkit run --config configs/pixelcnn-8bit.toml --prior acn --data fashion-mnist --train-limit 3000 --epochs 1 --threads 1 --out ../runs/fm8-pc-pre45
#   bash before_after.sh $OLD_PYTHON ../runs/fm8-pc-pre45     # (pause other work first)
# Each side codes all 10,000 test images in set mode and decodes them: seconds and peak memory.
OLD_PYTHON=$1
RUN=$2
echo "== d13001a (before portable coding), machine-bound"
/usr/bin/time -f "%e s %M KB" "$OLD_PYTHON" -m acnkit compress "$RUN" --data fashion-mnist --set -o old10k.acnz --overwrite --json -q 2>&1 | tail -2
/usr/bin/time -f "%e s %M KB" "$OLD_PYTHON" -m acnkit decompress old10k.acnz --run "$RUN" -o old10k.npy --overwrite -q 2>&1 | tail -1
echo "== working tree, portable"
/usr/bin/time -f "%e s %M KB" acnkit compress "$RUN" --data fashion-mnist --set -o new10k.acnz --overwrite --json -q 2>&1 | tail -2
/usr/bin/time -f "%e s %M KB" acnkit decompress new10k.acnz --run "$RUN" -o new10k.npy --overwrite -q 2>&1 | tail -1
