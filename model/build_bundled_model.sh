#!/usr/bin/env bash
# Retrain the bundled model from scratch (seed 0) on the 18 labelled NEON sites and re-measure
# everything its model card reports, then rewrite the card. About 2.5 hours on a 2-core CPU with
# bfloat16 units (100 epochs of about 1.2 minutes, then scoring); about twice that on a CPU without
# them, where it trains in float32. With --site-folds also the four trainings without one fold of
# sites each (about 4 hours each, two at a time).
# Stopped part-way, the same command goes on from each training's last finished epoch.
#
#   model/build_bundled_model.sh [--site-folds]
#
# Writes resources/models/: the checkpoint and its history, validation.json, benchmark.json,
# site_folds.json (with the option), sample_plots.json with the pictures in samples/
# (the deepforest package's public sample plots), and MODEL_CARD.md. Pictures of training and
# validation plots go to output/ only: the training data is not ours to redistribute.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python=.venv/bin/python
models=resources/models

# Two threads: the shipped checkpoint was trained with two, and only the same number of threads
# gives the same weights bit for bit (the threads split the sums inside the network; two runs of
# 30 steps with two threads, in bfloat16, gave identical weights).
$python model/train_bundled_model.py --threads 2
$python model/evaluate_model.py --resolutions 0.05,0.1,0.2 --json $models/validation.json --pictures output/validation
if [ "${1:-}" = "--site-folds" ]; then
    # Finished checkpoints are of an older build and would be scored otherwise; a stopped
    # training (a checkpoint and its .training-state, no history yet) goes on where it stopped.
    for history in output/site-folds/fold-*.history.json; do
        if [ -e "$history" ]; then rm -f "${history%.history.json}".*; fi
    done
    $python model/site_folds.py --train --json $models/site_folds.json
fi
$python model/score_sample_plots.py --json $models/sample_plots.json --pictures $models/samples
$python benchmarks/detection_speed.py --json $models/benchmark.json
$python model/write_model_card.py
