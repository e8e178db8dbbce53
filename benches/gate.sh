#!/usr/bin/env bash
# Instruction-count regression gate for the engine's hot paths.
#
# Builds the `gate` binary in release (the release profile keeps debug symbols), runs
# each fixed workload once under callgrind with collection switched on only inside its
# measured function, and compares the instruction counts with benches/baseline.json.
# Exit 1 when a path costs more than the threshold over its baseline.
#
#   bash benches/gate.sh                  # compare, 5% threshold
#   bash benches/gate.sh --threshold 3    # stricter
#   bash benches/gate.sh --update         # measure and rewrite the baseline (commit it)
#   bash benches/gate.sh --only ws_decode # one path
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
threshold=5
update=()
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threshold) threshold="$2"; shift 2 ;;
    --update) update=(--update); shift ;;
    --only) only="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gate.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v valgrind >/dev/null || { echo "gate.sh: valgrind is required (apt-get install -y valgrind)" >&2; exit 2; }
target_dir="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --quiet -p benches --bin gate
gate="$target_dir/release/gate"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
paths="$("$gate" list)"
[ -n "$only" ] && paths="$only"
for path in $paths; do
  # Only the measured function counts: input building and process start-up do not.
  if ! valgrind --tool=callgrind --callgrind-out-file="$work/$path.out" \
      --collect-atstart=no --toggle-collect="*::gate_$path" \
      "$gate" run "$path" >"$work/$path.stdout" 2>"$work/$path.log"; then
    echo "gate.sh: workload $path failed under valgrind:" >&2
    tail -20 "$work/$path.log" >&2
    exit 2
  fi
  instructions="$(awk '/^(summary|totals):/ { print $2; exit }' "$work/$path.out")"
  if [ -z "$instructions" ] || [ "$instructions" = 0 ]; then
    echo "gate.sh: no instructions counted for $path (was gate_$path inlined or renamed?)" >&2
    exit 2
  fi
  echo "$path $instructions" >>"$work/counts"
done
"$gate" compare --baseline benches/baseline.json --counts "$work/counts" --threshold "$threshold" "${update[@]}"
