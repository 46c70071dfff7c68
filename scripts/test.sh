#!/usr/bin/env bash
# The test command: Swift unit/integration tests, then the process-level tests (grpcio, Envoy 1.40, Redis).
set -euo pipefail
cd "$(dirname "$0")/.."

swift build
swift test
EPP_BIN="$(swift build --show-bin-path)/epp" python3 -m pytest -q Tests/integration
