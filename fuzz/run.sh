#!/usr/bin/env bash
# Runs one fuzz target for a while on the stable toolchain.
#
#   fuzz/run.sh TARGET [SECONDS] [extra libFuzzer flags...]
#
# The corpus grows in fuzz/corpus/TARGET (not committed); the committed
# seeds in fuzz/seeds/TARGET are read too. Crashes land in
# fuzz/artifacts/TARGET. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"

target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags...]}
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))

flags=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048)
if [[ -f dicts/$target.dict ]]; then
    flags+=(-dict="dicts/$target.dict")
fi
mkdir -p "corpus/$target"
# cargo-fuzz passes -Zsanitizer=address, a nightly flag; RUSTC_BOOTSTRAP
# lets the stable compiler accept it.
RUSTC_BOOTSTRAP=1 exec cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- "${flags[@]}" "$@"
