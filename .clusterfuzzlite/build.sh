#!/bin/bash -eu
# Builds Stagehand's cargo-fuzz targets (ops, parse) into $OUT, with a seed corpus and
# libFuzzer options for each.
#
# In the OSS-Fuzz / ClusterFuzzLite image the checkout is $SRC/stagehand and the image's
# cargo wrapper supplies the sanitizer flags. Outside Docker (the test in `cargo xtask test`)
# the checkout is this script's parent directory, and FUZZ_TOOLCHAIN / FUZZ_BUILD_ARGS choose
# the toolchain and flags, e.g. FUZZ_TOOLCHAIN=stable FUZZ_BUILD_ARGS="-s none".
# `bash build.sh` ignores the flags of the first line: set them here too.
set -euo pipefail
: "${OUT:?set OUT to the directory that receives the fuzz targets}"
repo="${SRC:-/nonexistent}/stagehand"
[ -d "$repo" ] || repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

# shellcheck disable=SC2086 # FUZZ_BUILD_ARGS holds several words on purpose.
# The runner cannot set STAGEHAND_KNOWN, so the known findings of corpus/known-findings.txt
# are compiled in: rediscovering a filed finding is not a crash.
cargo ${FUZZ_TOOLCHAIN:+"+$FUZZ_TOOLCHAIN"} fuzz build -O --features builtin-known ${FUZZ_BUILD_ARGS:-}
for target in ops parse; do
  cp "fuzz/target/x86_64-unknown-linux-gnu/release/$target" "$OUT/"
  # The length campaigns use (cargo xtask fuzz: -max_len=512, about 60 ops).
  printf '[libfuzzer]\nmax_len = 512\nlen_control = 0\n' > "$OUT/$target.options"
done

# Seeds: the hand-written corpus as fuzzer inputs (ops) and as text (parse).
seeds="$(mktemp -d)"
cargo build --release --quiet -p stagehand-cli --bin stagehand
target/release/stagehand seeds corpus -o "$seeds/ops"
mkdir -p "$seeds/parse" && find corpus -name '*.s2' -exec cp {} "$seeds/parse/" \;
if command -v zip >/dev/null; then
  for target in ops parse; do (cd "$seeds/$target" && zip -qr "$OUT/${target}_seed_corpus.zip" .); done
else
  for target in ops parse; do rm -rf "$OUT/${target}_seed_corpus" && cp -r "$seeds/$target" "$OUT/${target}_seed_corpus"; done
fi
rm -rf "$seeds"
