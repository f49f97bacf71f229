#!/usr/bin/env bash
# The accuracy table of a model folder on a ProsQA-schema file: coconut with 0..N thoughts
# (N: the model's own count), pause tokens at N, and the thought frontier at N; every figure
# is recorded in the folder's coconut-lens.json (`eval --record`), then printed as Markdown.
#
#   scripts/eval-table.sh MODEL_DIR DATA.json
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: scripts/eval-table.sh MODEL_DIR DATA.json}"
data="${2:?usage: scripts/eval-table.sh MODEL_DIR DATA.json}"
cargo build --release --locked --quiet
bin=target/release/coconut-lens
own=$(jq -r '.thoughts // 6' "$model/coconut-lens.json")
stem=$(basename "$data" .json)
out=$(mktemp -d)
for k in $(seq 0 "$own"); do
    "$bin" eval --data "$data" --model "$model" --mode coconut --thoughts "$k" --record >"$out/coconut-$k.json"
done
"$bin" eval --data "$data" --model "$model" --mode pause --thoughts "$own" --record >"$out/pause.json"
acc() { jq -r '"\(.accuracy * 100 | . * 10 | round / 10)% (\(.correct)/\(.n)) | \(.wrong_candidate) | \(.no_candidate)"' "$1"; }
echo "| run on $stem | accuracy | wrong candidate | neither candidate |"
echo "|---|---|---|---|"
for k in $(seq 0 "$own"); do
    echo "| coconut, $k thoughts | $(acc "$out/coconut-$k.json") |"
done
echo "| pause tokens, $own slots | $(acc "$out/pause.json") |"
echo
echo "Thought frontier (mean mass by BFS depth, coconut with $own thoughts):"
jq -r '.thought_frontier[] | "T\(.thought): mass at depth 0, 1, ... \(.mass_by_depth | map(. * 1000 | round / 1000)) unreachable \(.unreachable * 1000 | round / 1000) other \(.other * 1000 | round / 1000)"' "$out/coconut-$own.json"
rm -rf "$out"
