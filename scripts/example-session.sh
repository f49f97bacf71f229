#!/usr/bin/env bash
# Regenerates the example session of the bundled model and its plots, shown in the README:
# sessions/prosqa-demo.json and sessions/prosqa-demo/*.png|svg.
#
# The run: the bundled model on its demo prompt with head ABLATE zero-ablated (default 0.3,
# one of the two heads that move the answer's concept token most), and head importance by
# ablation, on top of it, scored at that token (answer token 4 of "### Fae is a lempus.").
set -euo pipefail
cd "$(dirname "$0")/.."
ablate="${ABLATE:-0.3}"
cargo build --release --locked --quiet
bin=target/release/coconut-lens
rm -rf sessions/prosqa-demo sessions/prosqa-demo.json
mkdir -p sessions
"$bin" analyze --head-importance ablation --importance-step 4 --ablate-heads "$ablate" \
    --save-session sessions/prosqa-demo.json >/dev/null
"$bin" export sessions/prosqa-demo.json --out sessions/prosqa-demo --format png,svg
ls -l sessions/prosqa-demo
