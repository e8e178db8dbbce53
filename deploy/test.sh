#!/usr/bin/env bash
# The test command: builds everything and runs every test of the project.
#
#   bash deploy/test.sh [STAGE...]      (default: all)
#
# Stages, in the order `all` runs them:
#   config    nginx -t on the generated and shipped configs (plain and TLS); the
#             compose file and k8s manifests parse and hold what they promise; lint
#             with shellcheck
#   unit      cargo test --workspace --release with Kafka up (its SASL listener too)
#             and CHAT_REQUIRE_EXTERNAL=1 (tests needing node/Kafka/nginx fail, never
#             skip); includes the JavaScript client test (engine/tests/compat.rs)
#   compat    only the JavaScript client test (not part of `all`: unit runs it)
#   gate      instruction counts of the hot paths (callgrind) against
#             benches/baseline.json: fails on a regression over 5%
#   autobahn  Autobahn|Testsuite against the engine's WebSocket echo endpoint
#   cluster   cluster.sh up --nodes 2 (Kafka, 2 engines, nginx); messages cross
#             nodes through nginx, also after a node restart and with nginx on TLS
#             (up --tls); down leaves nothing
#
# On a fresh Debian machine it installs what is missing (nginx, python3-venv,
# libssl-dev and pkg-config with apt, npm packages, the Autobahn venv), builds
# release binaries, starts what each stage needs, stops it again (also on failure
# or Ctrl-C), and exits non-zero if any stage failed. Needs cargo, node/npm and
# python3 on PATH. Environment: TEST_CLUSTER_PORT (nginx port of the cluster stage;
# its engines take the next ports; default: a free run of ports), AUTOBAHN_TIMEOUT
# (600 s), KAFKA_PORT / KAFKA_SASL_PORT (9092 / 9094, the broker's two listeners).
set -euo pipefail

# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CHAT_LOG_NAME=test.sh
cd "$CHAT_ROOT"

SHARED="${CHAT_SHARED_DIR:-$(git rev-parse --show-toplevel 2>/dev/null || echo "$CHAT_ROOT")/../shared}"
COMPAT_DIR="$CHAT_ROOT/engine/tests/compat"
WORK="$CHAT_ROOT/target/test-sh"
ALL_STAGES=(config unit gate autobahn cluster)
KNOWN_STAGES=" config unit compat gate autobahn cluster "

passed=()
failed=()

main() {
  local -a stages=()
  local stage
  [ $# -eq 0 ] && set -- all
  for stage in "$@"; do
    case "$stage" in
      all) stages+=("${ALL_STAGES[@]}") ;;
      -h | --help) sed -n '2,27s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
      *)
        [[ "$KNOWN_STAGES" == *" $stage "* ]] || { log "unknown stage '$stage'"; exit 2; }
        stages+=("$stage")
        ;;
    esac
  done
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap summary EXIT
  mkdir -p "$WORK"

  check_tools
  if needs_build "${stages[@]}"; then
    ensure_build_deps || exit 1
    run_stage build stage_build
    [ ${#failed[@]} -eq 0 ] || exit 1
  fi
  for stage in "${stages[@]}"; do
    run_stage "$stage" "stage_$stage"
  done
  [ ${#failed[@]} -eq 0 ]
}

# run_stage NAME FUNCTION: run FUNCTION in a subshell with errexit on (so it
# stops at its first failing command) and its own EXIT trap for cleanup.
run_stage() {
  local name="$1" fn="$2" start rc=0
  start=$(date +%s)
  printf '\n=== test.sh: stage %s\n' "$name" >&2
  set +e
  (
    trap 'exit 130' INT
    trap 'exit 143' TERM
    set -euo pipefail
    "$fn"
  )
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed+=("$name")
    printf '=== test.sh: stage %s passed (%ss)\n' "$name" "$(($(date +%s) - start))" >&2
  else
    failed+=("$name")
    printf '=== test.sh: stage %s FAILED (exit %s, %ss)\n' "$name" "$rc" "$(($(date +%s) - start))" >&2
    [ "$rc" -ge 128 ] && exit "$rc" # interrupted: do not go on
  fi
  return 0
}

summary() {
  local rc=$?
  trap - EXIT
  if [ ${#failed[@]} -gt 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
  printf '\ntest.sh: %d passed, %d failed' "${#passed[@]}" "${#failed[@]}"
  [ ${#failed[@]} -eq 0 ] || printf ' (failed: %s)' "${failed[*]}"
  printf '\n'
  exit "$rc"
}

# ---------------------------------------------------------------- prerequisites

check_tools() {
  local missing=()
  command -v cargo >/dev/null 2>&1 || missing+=("cargo (install Rust with rustup)")
  command -v python3 >/dev/null 2>&1 || missing+=("python3")
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm || missing+=("node and npm (Node 20)")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "missing: ${missing[*]}"
    exit 1
  fi
}

needs_build() {
  local s
  for s in "$@"; do
    [ "$s" = config ] || return 0
  done
  return 1
}

# npm packages of the JavaScript client test, from the committed lock file.
ensure_node_modules() {
  local stamp="$COMPAT_DIR/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$COMPAT_DIR/package-lock.json" -nt "$stamp" ]; then
    log "npm ci in $COMPAT_DIR"
    # No install scripts: none of the packages needs one, and no native builds.
    (cd "$COMPAT_DIR" && npm ci --ignore-scripts --no-audit --no-fund)
  fi
}

# python3 able to make venvs (Debian splits venv/ensurepip into python3-venv).
ensure_python_venv() {
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv python3-pip
}

# Prints a python with PyYAML: the system one, else a small venv under target/.
yaml_python() {
  local venv="$CHAT_ROOT/target/.venv-deploy"
  if python3 -c 'import yaml' 2>/dev/null; then
    command -v python3
    return 0
  fi
  if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    ensure_python_venv >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "PyYAML==6.0.2" >&2
  fi
  echo "$venv/bin/python"
}

# Starts Kafka unless one already listens; KAFKA_STARTED=1 when this shell did.
KAFKA_STARTED=0
start_kafka() {
  if port_open "$KAFKA_PORT"; then
    log "using the Kafka already listening on 127.0.0.1:$KAFKA_PORT"
    port_open "$KAFKA_SASL_PORT" ||
      log "it has no SASL listener on 127.0.0.1:$KAFKA_SASL_PORT, so the SASL test will fail" \
        "(restart it with kafka.sh, or set KAFKA_SASL_PORT)"
    return 0
  fi
  [ -f "$KAFKA_SH" ] || { log "$KAFKA_SH not found"; return 1; }
  KAFKA_STARTED=1
  bash "$KAFKA_SH" start
}

stop_kafka() {
  [ "$KAFKA_STARTED" = 1 ] || return 0
  bash "$KAFKA_SH" stop || log "kafka.sh stop failed"
  KAFKA_STARTED=0
}

# ---------------------------------------------------------------- stages

stage_build() {
  cargo build --workspace --release --bins
}

stage_config() {
  local tmp py port port2
  ensure_nginx
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand tmp now: the trap runs after this function
  trap "rm -rf '$tmp'" EXIT

  port="$(free_port)"
  render_nginx_conf "$tmp/generated" "127.0.0.1:$port" 127.0.0.1:18081 127.0.0.1:18082
  nginx_cmd "$tmp/generated" -t

  # cluster.sh up --tls, with a throwaway certificate.
  ensure_tls_cert "$tmp/tls"
  port="$(free_port)"
  render_nginx_conf --tls "$tmp/tls/cert.pem" "$tmp/tls/key.pem" "$tmp/generated-tls" \
    "127.0.0.1:$port" 127.0.0.1:18081 127.0.0.1:18082
  grep -qE '^ *listen 127\.0\.0\.1:[0-9]+ ssl ' "$tmp/generated-tls/nginx.conf" ||
    { log "the TLS config has no ssl listener"; return 1; }
  nginx_cmd "$tmp/generated-tls" -t

  # The shipped config names compose hosts and port 80: point them at loopback
  # and a free port so that nginx -t can resolve and bind them here.
  port="$(free_port)"
  mkdir -p "$tmp/shipped"
  sed -e 's/\bengine\([0-9]\+\):8080/127.0.0.1:1808\1/' -e "s/listen 80 /listen 127.0.0.1:$port /" \
    deploy/nginx/nginx.conf >"$tmp/shipped/nginx.conf"
  nginx_cmd "$tmp/shipped" -t
  # Its commented TLS lines, uncommented as its header says, with the throwaway pair.
  port2="$(free_port)"
  mkdir -p "$tmp/shipped-tls"
  sed -e 's/^#tls //' -e "s|/etc/nginx/tls/tls.crt|$tmp/tls/cert.pem|" \
    -e "s|/etc/nginx/tls/tls.key|$tmp/tls/key.pem|" -e "s/listen 443 /listen 127.0.0.1:$port2 /" \
    "$tmp/shipped/nginx.conf" >"$tmp/shipped-tls/nginx.conf"
  grep -q "listen 127.0.0.1:$port2 ssl " "$tmp/shipped-tls/nginx.conf" ||
    { log "deploy/nginx/nginx.conf has no #tls listener"; return 1; }
  nginx_cmd "$tmp/shipped-tls" -t

  py="$(yaml_python)"
  "$py" - deploy/docker-compose.yml deploy/k8s/*.yaml <<'PYEOF'
import os, sys, yaml

def fail(msg):
    sys.exit("config: " + msg)

compose_path, k8s_paths = sys.argv[1], sys.argv[2:]
compose = yaml.safe_load(open(compose_path))
services = compose["services"]
for name in ("kafka", "kafka-init", "engine1", "engine2", "nginx"):
    if name not in services:
        fail("%s: no service %s" % (compose_path, name))
published = sorted(n for n, s in services.items() if s.get("ports"))
if published != ["nginx"]:
    fail("%s: only nginx may publish ports, not %s" % (compose_path, published))
for name in ("engine1", "engine2"):
    s = services[name]
    if not any("seccomp" in o for o in s.get("security_opt", [])):
        fail("%s: %s has no seccomp option for io_uring" % (compose_path, name))
    if "memlock" not in s.get("ulimits", {}):
        fail("%s: %s has no memlock ulimit" % (compose_path, name))
    if "--kafka-brokers" not in s.get("command", []):
        fail("%s: %s runs without --kafka-brokers" % (compose_path, name))
for volume in services["nginx"].get("volumes", []):
    source = volume.split(":")[0]
    if source.startswith(".") and not os.path.exists(os.path.join(os.path.dirname(compose_path), source)):
        fail("%s: nginx mounts missing %s" % (compose_path, source))

kinds = {}
for path in k8s_paths:
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            kinds.setdefault(doc["kind"], []).append(doc)
for kind in ("Deployment", "Service", "PodDisruptionBudget", "Kustomization"):
    if kind not in kinds:
        fail("deploy/k8s: no %s" % kind)
for deployment in kinds["Deployment"]:
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            if c.get(probe, {}).get("httpGet", {}).get("path") != "/healthz":
                fail("deploy/k8s: %s of %s is not GET /healthz" % (probe, c["name"]))
for ingress in kinds.get("Ingress", []):
    tls = ingress["spec"].get("tls") or []
    if not tls or not all(t.get("secretName") for t in tls):
        fail("deploy/k8s: Ingress %s has no TLS Secret" % ingress["metadata"]["name"])
    services = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    if services != {s["metadata"]["name"] for s in kinds["Service"]}:
        fail("deploy/k8s: Ingress %s does not lead to the Service" % ingress["metadata"]["name"])
print("config: compose file and %d k8s manifests hold together" % sum(map(len, kinds.values())))
PYEOF

  if command -v shellcheck >/dev/null 2>&1; then
    shellcheck -x -S warning deploy/test.sh deploy/cluster.sh deploy/lib.sh .ci/run
  else
    log "shellcheck not installed; skipping the shell lint (apt-get install shellcheck)"
  fi
}

stage_unit() {
  ensure_nginx
  ensure_node_modules
  trap stop_kafka EXIT
  start_kafka
  export CHAT_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  export CHAT_KAFKA_SASL_BROKERS="127.0.0.1:$KAFKA_SASL_PORT"
  CHAT_REQUIRE_EXTERNAL=1 cargo test --workspace --release --no-fail-fast
}

stage_gate() {
  command -v valgrind >/dev/null 2>&1 || apt_install valgrind
  bash benches/gate.sh
}

stage_compat() {
  ensure_node_modules
  CHAT_REQUIRE_EXTERNAL=1 cargo test --release -p chat-engine --test compat
}

stage_autobahn() {
  local port out="$CHAT_ROOT/target/autobahn" pid
  ensure_python_venv
  mkdir -p "$out"
  port="$(free_port)"
  # Case 9.1.6 echoes a 16 MiB message: raise the limits for this endpoint's run.
  "$CHAT_ENGINE_BIN" --listen "127.0.0.1:$port" --shards 1 --ws-echo-path /echo \
    --max-frame-bytes 20000000 --max-outbound-bytes 40000000 \
    >"$out/engine.log" 2>&1 </dev/null &
  pid=$!
  # shellcheck disable=SC2064 # expand pid now: the trap runs after this function
  trap "stop_pid $pid '--ws-echo-path /echo' 10" EXIT
  wait_healthz "$port" 60 "$pid" "$out/engine.log"
  AUTOBAHN_VENV="$CHAT_ROOT/target/.venv-autobahn" AUTOBAHN_AGENT=chat-engine \
    AUTOBAHN_TIMEOUT="${AUTOBAHN_TIMEOUT:-600}" \
    bash "$SHARED/conformance/autobahn/run.sh" "ws://127.0.0.1:$port/echo" "$out"
}

stage_cluster() {
  local state="$WORK/cluster" base pids pid left=() kafka_before=0
  ensure_nginx
  ensure_node_modules
  export CLUSTER_STATE="$state" CLUSTER_PORT="${TEST_CLUSTER_PORT:-$(free_port_run 3)}"
  port_open "$KAFKA_PORT" && kafka_before=1
  base="http://127.0.0.1:$CLUSTER_PORT$CHAT_BASE_PATH"
  trap 'bash deploy/cluster.sh down >/dev/null 2>&1 || true' EXIT

  bash deploy/cluster.sh up --nodes 2
  node "$COMPAT_DIR/compat.mjs" --cluster --nodes 2 "$base"

  # A restarted node must get clients again through nginx (max_fails/fail_timeout).
  log "cluster: restarting node2"
  bash deploy/cluster.sh stop-node 2
  bash deploy/cluster.sh up --nodes 2
  node "$COMPAT_DIR/compat.mjs" --cluster --nodes 2 "$base"

  # The same clients over TLS (https, wss), trusting only the cluster's own certificate.
  log "cluster: nginx on TLS"
  bash deploy/cluster.sh up --nodes 2 --tls
  NODE_EXTRA_CA_CERTS="$state/tls/cert.pem" \
    node "$COMPAT_DIR/compat.mjs" --cluster --nodes 2 "https://127.0.0.1:$CLUSTER_PORT$CHAT_BASE_PATH"

  pids="$(cat "$state"/node*.pid "$state/nginx/nginx.pid" 2>/dev/null | tr '\n' ' ')"
  bash deploy/cluster.sh down
  bash deploy/cluster.sh down # safe to repeat
  trap - EXIT
  for pid in $pids; do
    kill -0 "$pid" 2>/dev/null && left+=("pid $pid")
  done
  pgrep -f -- "--listen 127.0.0.1:$((CLUSTER_PORT + 1)) " >/dev/null && left+=("chat-engine node1")
  pgrep -f -- "--listen 127.0.0.1:$((CLUSTER_PORT + 2)) " >/dev/null && left+=("chat-engine node2")
  pgrep -f -- "$state/nginx/nginx.conf" >/dev/null && left+=("nginx")
  if [ "$kafka_before" = 0 ] && port_open "$KAFKA_PORT"; then left+=("kafka on :$KAFKA_PORT"); fi
  if [ ${#left[@]} -gt 0 ]; then
    log "still running after cluster.sh down: ${left[*]}"
    return 1
  fi
  log "cluster: down left nothing running"
}

main "$@"
