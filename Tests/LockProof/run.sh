#!/bin/sh
# Builds and runs the Lock evidence (see Package.swift). Exit 0 when TSan reports the Mutex run, stays silent on
# the Lock run, and both totals are right.
set -u
cd "$(dirname "$0")"
swift build -c debug --sanitize=thread --product lock-race-proof >/dev/null || exit 1
bin=.build/debug/lock-race-proof
logs=$(mktemp -d)
export TSAN_OPTIONS=halt_on_error=0 SWIFT_BACKTRACE=enable=no
$bin mutex > "$logs/mutex.log" 2>&1
$bin lock > "$logs/lock.log" 2>&1
mutex_reports=$(grep -c "WARNING: ThreadSanitizer" "$logs/mutex.log")
lock_reports=$(grep -c "WARNING: ThreadSanitizer" "$logs/lock.log")
echo "Mutex: $(grep total "$logs/mutex.log"), ThreadSanitizer reports: $mutex_reports"
echo "Lock:  $(grep total "$logs/lock.log"), ThreadSanitizer reports: $lock_reports"
swift build -c release --product lock-cost >/dev/null || exit 1
.build/release/lock-cost || exit 1
# TSan exits 66 after reports; the totals line is what must be right.
grep -q "total 60000" "$logs/mutex.log" && grep -q "total 60000" "$logs/lock.log" && [ "$mutex_reports" -gt 0 ] && [ "$lock_reports" -eq 0 ]
