#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (seconds per target: $1, default 60) from a corpus
# seeded from examples/, and fails on the first crash, leaving its input under
# fuzz/artifacts/TARGET/. Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); the versions
# built are fuzz/Cargo.lock's.
#
# libFuzzer's instrumentation needs unstable compiler flags: on a stable toolchain they are
# enabled with RUSTC_BOOTSTRAP=1, for this crate's build only. No sanitizer: the code under
# test is safe Rust, so what a run looks for is a panic, an abort or a broken invariant, which
# the targets assert.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTC_BOOTSTRAP=1
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
python3 seed.py "$corpus"
targets=$(cargo fuzz list)
cargo fuzz build --sanitizer none
for target in $targets; do
  mkdir -p "$corpus/$target"
  echo "== fuzz $target (${seconds}s, $(find "$corpus/$target" -type f | wc -l) seeds)"
  cargo fuzz run --sanitizer none "$target" "$corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 2>&1 | tail -n 12
done
