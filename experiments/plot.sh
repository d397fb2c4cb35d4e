#!/usr/bin/env bash
# Figures of an experiment's results.csv (experiments/lib.sh), drawn by `dit plot`:
#   OUT/fd-vs-steps.svg    FD and class agreement against training steps, one line per model
#   OUT/fd-vs-compute.svg  FD against log10 of training compute (3 x forward Gflops x images, in Tflops; the
#                          paper's Fig. 9)
#   OUT/fd-vs-gflops.svg   FD at the last step against log10 of forward Gflops, one line per patch size (the
#                          paper's Fig. 8 has Gflops on a log axis too)
# usage: experiments/plot.sh OUT [TITLE]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: experiments/plot.sh OUT [TITLE]}
title=${2:-}
DIT=${DIT:-build/dit}
csv="$out/results.csv"
[[ -f $csv ]] || { echo "experiments/plot.sh: no $csv" >&2; exit 1; }
tsv="$out/results.tsv"
# columns: model block patch gflops step train_tflops fd agreement log10_gflops log10_train_tflops (the CSV's
# first line is the recipe)
tail -n +3 "$csv" | awk -F, 'BEGIN { OFS = "\t"; print "model", "block", "patch", "gflops", "step", "train_tflops", "fd",
        "agreement", "log10_gflops", "log10_train_tflops" }
    $13 != "nan" { print $2, $3, $7, $9, $10, $12 / 1e3, $13, $14, log($9) / log(10), log($12 / 1e3) / log(10) }' > "$tsv"
"$DIT" plot --tsv "$tsv" --series model --x step --y fd --y agreement ${title:+--title "$title"} -o "$out/fd-vs-steps.svg"
"$DIT" plot --tsv "$tsv" --series model --x log10_train_tflops --y fd -o "$out/fd-vs-compute.svg"
# the last step of each model, sorted by Gflops, one line per patch size
last="$out/last.tsv"
awk -F'\t' 'NR == 1 { header = $0; next } { if ($5 >= max[$1]) { max[$1] = $5; row[$1] = $0 } }
    END { print header; for (m in row) print row[m] }' "$tsv" | { read -r h; echo "$h"; sort -t$'\t' -k4,4g; } > "$last"
"$DIT" plot --tsv "$last" --series patch --x log10_gflops --y fd --y agreement -o "$out/fd-vs-gflops.svg"
echo "experiments/plot.sh: $out/fd-vs-steps.svg, fd-vs-compute.svg, fd-vs-gflops.svg" >&2
