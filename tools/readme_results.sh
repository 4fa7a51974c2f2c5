#!/usr/bin/env bash
# Reproduces the README's "Results on the bundled tasks": embeds the three tasks once,
# then fits the three probes (each fit also reports the majority and k-mer baselines on the
# same split) and prints the comparison table.
#   bash tools/readme_results.sh [MODEL] [WORKDIR]
# MODEL defaults to 50M_multi_species_v2 with --allow-random-weights (seeded random weights
# when the released ones are not in the local Hugging Face cache).
set -euo pipefail
MODEL=${1:-50M_multi_species_v2}
WORK=${2:-results}
mkdir -p "$WORK"
embedcache build data/prom_300_tata.csv --model "$MODEL" --allow-random-weights --cache "$WORK/cache.zarr" \
    --layers 3,6,9,12 --pool cls,mean --attention 1:4,7:16 --quiet
embedcache build data/enhancers_3class.csv data/splice_3class.csv --model "$MODEL" --allow-random-weights \
    --cache "$WORK/cache.zarr" --layers 3,6,9,12 --pool cls,mean --quiet
for task in prom_300_tata enhancers_2class enhancers_3class splice_3class; do
    for probe in logistic mlp xgboost; do
        classify fit --probe "$probe" --data "data/$task.csv" --cache "$WORK/cache.zarr" \
            --layer 12 --pool cls --out "$WORK/runs/${task}_${probe}" --force
    done
done
classify compare "$WORK"/runs/* --out "$WORK/compare" --force
