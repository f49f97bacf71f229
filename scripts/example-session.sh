#!/usr/bin/env bash
# Regenerates the example session of the bundled model and its plots, shown in the README:
# sessions/prosqa-demo.json and sessions/prosqa-demo/*.png|svg.
#
# The run: the bundled model on its demo prompt with head ABLATE zero-ablated (default 1.2,
# the third of the heads that move the answer's concept token most: without it the answer
# names the other candidate), and head importance by ablation, on top of it, scored at that
# token (answer token 4 of "### Alex is a quimpus.").
set -euo pipefail
cd "$(dirname "$0")/.."
ablate="${ABLATE:-1.2}"
cargo build --release --locked --quiet
bin=target/release/coconut-lens
rm -rf sessions/prosqa-demo sessions/prosqa-demo.json
mkdir -p sessions
"$bin" analyze --head-importance ablation --importance-step 4 --ablate-heads "$ablate" \
    --save-session sessions/prosqa-demo.json >/dev/null
"$bin" export sessions/prosqa-demo.json --out sessions/prosqa-demo --format png,svg
# The graph frontier of the intact model as well (the session's plot draws the ablated run).
tmp=$(mktemp -d)
"$bin" analyze --save-session "$tmp/intact.json" >/dev/null
"$bin" export "$tmp/intact.json" --out "$tmp/plots" --format png,svg
for ext in png svg; do cp "$tmp/plots/graph-frontier.$ext" "sessions/prosqa-demo/graph-frontier-intact.$ext"; done
rm -rf "$tmp"
ls -l sessions/prosqa-demo
