#!/usr/bin/env bash
# Kafka's own producer benchmark against the local broker: the yardstick for the
# bridge's produce rate. Same as `kafka.sh perf`; see `kafka.sh perf --help`.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/kafka.sh" perf "$@"
