#!/usr/bin/env bash
# The strategies' sweeps of docs/results/strategies, in growing stages and one strategy at a time, so
# that a partial store compares whole strategies on the same questions (each strategy's rows are the
# same as in one `--strategy a,b,c` call: every strategy is its own run). Resumable: rerun it and
# finished questions are skipped. Run from the repository's root.
#   LIMITS="30 50"  the stages (questions per strategy)
#   STRATEGIES      the order in which strategies are run within a stage
#   ENGINE          process (default: the engine the committed store was made with, so every strategy
#                   is compared on one engine) or server (llama.cpp's server, several questions at once)
#   SUITE           hotpotqa (default) or 2wiki: the second result's question set of that suite
#   MODEL           0.5b (default) or 1.5b: Qwen2.5-Coder of that size; the store is SUITE-MODEL
set -euo pipefail
case "${SUITE:-hotpotqa}" in
  hotpotqa) H=hotpotqa:../shared/data/hotpotqa/hotpot_dev_distractor_subset.json.gz ;;
  2wiki) H=2wiki:../shared/data/2wikimultihopqa/2wiki_dev_subset.json.gz ;;
  *) echo "SUITE must be hotpotqa or 2wiki, not ${SUITE}" >&2; exit 2 ;;
esac
case "${MODEL:-0.5b}" in
  0.5b|1.5b) ;;
  *) echo "MODEL must be 0.5b or 1.5b, not ${MODEL}" >&2; exit 2 ;;
esac
R=docs/results/strategies
for limit in ${LIMITS:-30 50 75 100}; do
  for s in ${STRATEGIES:-decompose tree best_of_n decompose:mode=sequential decompose:mode=parallel}; do
    .venv/bin/sounding bench $H --limit "$limit" --depths 0,1,2 --model qwen2.5-coder-${MODEL:-0.5b} \
      --strategy "$s" --engine "${ENGINE:-process}" --out "$R/${SUITE:-hotpotqa}-${MODEL:-0.5b}"
  done
done
