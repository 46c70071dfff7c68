#!/usr/bin/env bash
# Builds every libFuzzer target and runs each for N seconds (default 30).
#   Tests/Fuzz/run.sh [seconds] [target ...]
# Seeds in corpus/<name>/ are read only; inputs libFuzzer discovers go to
# .build/fuzz-work/<name>/ so the committed seeds stay small. Crash artifacts
# land in .build/fuzz-artifacts/<name>/. Exits non-zero if any target fails.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
swift="${SWIFT:-swift}"
command -v "$swift" >/dev/null || swift=/opt/swift/usr/bin/swift

# -enable-testing: fuzz-redis-reply reaches internal reply consumers through @testable import.
flags=(-c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing)
if [ "$#" -gt 0 ]; then targets=("$@"); else
    mapfile -t targets < <(sed -n 's/^ *("\(fuzz-[a-z0-9-]*\)".*/\1/p' Package.swift)
fi
# Per product: a plain `swift build` would also compile every dependency of the
# root package (NIO, Hummingbird, ...), which no fuzz target uses.
mkdir -p .build
for t in "${targets[@]}"; do
    if ! nice -n 10 "$swift" build "${flags[@]}" --product "$t" >.build/fuzz-build.log 2>&1; then
        grep -v "Cannot export local symbol" .build/fuzz-build.log | tail -40
        echo "build of $t failed" >&2
        exit 1
    fi
done
bin="$(nice -n 10 "$swift" build "${flags[@]}" --show-bin-path)"

# The Swift runtime's backtracer fights ASan/libFuzzer over crash signals.
export SWIFT_BACKTRACE=enable=no
status=0
printf '%-28s %12s %8s %s\n' target executions seconds result
for t in "${targets[@]}"; do
    name="${t#fuzz-}"
    work=".build/fuzz-work/$name"; art=".build/fuzz-artifacts/$name"
    mkdir -p "$work" "$art" "corpus/$name"
    log=".build/fuzz-work/$name.log"
    start=$(date +%s)
    if nice -n 10 "$bin/$t" -max_total_time="$seconds" -artifact_prefix="$art/" -print_final_stats=1 \
        "$work" "corpus/$name" >"$log" 2>&1; then result=ok; else result="FAILED (see $log)"; status=1; fi
    elapsed=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    printf '%-28s %12s %8s %s\n' "$t" "${runs:-?}" "$elapsed" "$result"
    # What failed and where the input went (CI keeps only this output).
    [ "$result" = ok ] || grep -E 'FUZZ INVARIANT FAILED|ERROR: |SUMMARY: |Test unit written|Base64: ' "$log" | head -8 >&2 || true
done
exit $status
