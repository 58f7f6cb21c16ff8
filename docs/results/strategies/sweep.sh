#!/usr/bin/env bash
# The strategies' sweeps of docs/results/strategies, in growing stages so that every stage's partial
# store compares all strategies on the same questions. Resumable: rerun it and finished questions are
# skipped. Run from the repository's root.
set -euo pipefail
H=hotpotqa:../shared/data/hotpotqa/hotpot_dev_distractor_subset.json.gz
R=docs/results/strategies
S="decompose,decompose:mode=sequential,tree,best_of_n"
for limit in ${LIMITS:-30 50 75 100}; do
  .venv/bin/sounding bench $H --limit "$limit" --depths 0,1,2 --model qwen2.5-coder-0.5b \
    --strategy "$S" --out $R/hotpotqa-0.5b
done
