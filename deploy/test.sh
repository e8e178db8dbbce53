#!/usr/bin/env bash
# The test command: builds everything and runs every test of the project.
#
#   bash deploy/test.sh [STAGE...]      (default: all)
#
# Stages, in the order `all` runs them:
#   config    nginx -t on the generated and shipped configs (plain and TLS); the
#             compose file, the k8s manifests and the Helm chart (helm lint, helm
#             template) hold what they promise, with pinned image tags; the Grafana
#             dashboard's metrics (check-metrics.py, offline); shellcheck
#   unit      cargo test --workspace --release with Kafka up (its SASL listener too)
#             and CHAT_REQUIRE_EXTERNAL=1 (tests needing node/Kafka/nginx fail, never
#             skip); includes the JavaScript client test (engine/tests/compat.rs)
#   compat    only the JavaScript client test (not part of `all`: unit runs it)
#   gate      instruction counts of the hot paths (callgrind) against
#             benches/baseline.json: fails on a regression over 5%
#   autobahn  Autobahn|Testsuite against the engine's WebSocket echo endpoint
#   cluster   cluster.sh up --nodes 2 (Kafka, 2 engines, nginx); messages cross
#             nodes through nginx (WebSocket and SockJS's HTTP transports), also
#             after a node restart and with nginx on TLS (up --tls); resuming
#             subscribers lose nothing across a kill -9, a rolling restart and a
#             broker outage (cluster.sh chaos, loadgen --resume); headless
#             Chromium chats over the HTTP transports (screenshots in
#             target/test-sh/browser); the dashboard's metrics exist on both nodes;
#             down leaves nothing
#
# On a fresh Debian machine it installs what is missing (nginx, shellcheck,
# python3-venv, libssl-dev, pkg-config and chromium with apt, npm packages, the
# Autobahn venv, helm built with go into deploy/.cache), builds release binaries,
# starts what each stage needs, stops it again (also on failure or Ctrl-C), and exits
# non-zero if any stage failed. Needs cargo, go, node/npm and python3 on PATH. Environment:
# TEST_CLUSTER_PORT (nginx port of the cluster stage; its engines take the next
# ports; default: a free run of ports), AUTOBAHN_TIMEOUT (600 s), KAFKA_PORT /
# KAFKA_SASL_PORT (9092 / 9094, the broker's two listeners).
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
      -h | --help) sed -n '2,34s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
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

# Debian's Chromium for the browser test (playwright-core drives it; it never
# downloads browsers of its own).
ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
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
  local tmp py port port2 helm chart=deploy/helm/chat-engine
  ensure_nginx
  ensure_shellcheck
  helm="$(ensure_helm)"
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

  # The chart as installed by default, and with every optional part switched on.
  "$helm" lint --strict "$chart"
  "$helm" template chat "$chart" >"$tmp/helm-default.yaml"
  "$helm" template chat "$chart" --set secrets.jwtSecret.secretName=jwt \
    --set secrets.jwtPublicKey.secretName=jwt-pub --set secrets.apiKeys.secretName=api-keys \
    --set tls.secretName=tls --set config.kafka-linger-ms=1 --set podAntiAffinity=hard \
    >"$tmp/helm-full.yaml"
  if "$helm" template chat "$chart" --set image.tag=latest >/dev/null 2>&1; then
    log "$chart renders with image.tag=latest; it must refuse a floating tag"
    return 1
  fi

  py="$(yaml_python)"
  "$py" - deploy/docker-compose.yml deploy/k8s/*.yaml <<'PYEOF'
import os, sys, yaml

def fail(msg):
    sys.exit("config: " + msg)

compose_path, k8s_paths = sys.argv[1], sys.argv[2:]
compose_dir = os.path.dirname(compose_path)
compose = yaml.safe_load(open(compose_path))
services = compose["services"]
for name in ("kafka", "kafka-init", "engine1", "engine2", "nginx", "prometheus", "grafana"):
    if name not in services:
        fail("%s: no service %s" % (compose_path, name))
# Only nginx faces clients. The monitoring profile (off by default) may publish its
# UIs, but on loopback only: Grafana and Prometheus have no business on a public port.
for name, s in services.items():
    ports = s.get("ports", [])
    if not ports or name == "nginx":
        continue
    if "monitoring" not in s.get("profiles", []):
        fail("%s: only nginx may publish ports by default, not %s" % (compose_path, name))
    for p in ports:
        if not str(p).startswith("127.0.0.1:"):
            fail("%s: %s publishes %s beyond 127.0.0.1" % (compose_path, name, p))
for name in ("prometheus", "grafana"):
    if services[name].get("profiles") != ["monitoring"]:
        fail("%s: %s is not in the monitoring profile only" % (compose_path, name))
for name in ("engine1", "engine2"):
    s = services[name]
    if not any("seccomp" in o for o in s.get("security_opt", [])):
        fail("%s: %s has no seccomp option for io_uring" % (compose_path, name))
    if "memlock" not in s.get("ulimits", {}):
        fail("%s: %s has no memlock ulimit" % (compose_path, name))
    if "--kafka-brokers" not in s.get("command", []):
        fail("%s: %s runs without --kafka-brokers" % (compose_path, name))
for name, s in services.items():
    for volume in s.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith(".") and not os.path.exists(os.path.join(compose_dir, source)):
            fail("%s: %s mounts missing %s" % (compose_path, name, source))

# Prometheus scrapes exactly the compose file's engines.
prom = yaml.safe_load(open(os.path.join(compose_dir, "prometheus/prometheus.yml")))
job = next((j for j in prom["scrape_configs"] if j["job_name"] == "chat-engine"), None)
if job is None or job.get("metrics_path", "/metrics") != "/metrics":
    fail("prometheus.yml: no chat-engine job on /metrics")
targets = sorted(t for c in job["static_configs"] for t in c["targets"])
engines = sorted(n + ":8080" for n in services if n.startswith("engine"))
if targets != engines:
    fail("prometheus.yml scrapes %s, the compose file runs %s" % (targets, engines))

# Grafana: every query goes through the Prometheus data source variable, so the
# dashboard imports into any Grafana, not only the provisioned one.
import json
dash = json.load(open(os.path.join(compose_dir, "grafana/chat-engine.json")))
variables = {v["name"]: v for v in dash["templating"]["list"]}
if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
    fail("chat-engine.json: no Prometheus data source variable")
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(dash["panels"]):
    for t in p.get("targets", []):
        if t.get("datasource", p.get("datasource", {})).get("uid") != "${datasource}":
            fail("chat-engine.json: panel %r does not query ${datasource}" % p.get("title"))

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

  "$py" - "$tmp/helm-default.yaml" "$tmp/helm-full.yaml" <<'PYEOF'
import sys, yaml

def fail(msg):
    sys.exit("config: helm template: " + msg)

def rendered(path):
    kinds = {}
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            kinds.setdefault(doc["kind"], []).append(doc)
    return kinds

default, full = rendered(sys.argv[1]), rendered(sys.argv[2])
for kind in ("Deployment", "Service", "PodDisruptionBudget"):
    if len(default.get(kind, [])) != 1:
        fail("default values render %d %s, want 1" % (len(default.get(kind, [])), kind))
pod = default["Deployment"][0]["spec"]["template"]
spec = pod["spec"]
annotations = pod["metadata"].get("annotations", {})
want = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
for key, value in want.items():
    if annotations.get(key) != value:
        fail("pod annotation %s is %r, want %r" % (key, annotations.get(key), value))
(c,) = spec["containers"]
for probe in ("livenessProbe", "readinessProbe"):
    if c.get(probe, {}).get("httpGet", {}).get("path") != "/healthz":
        fail("%s is not GET /healthz" % probe)
if "--node-id=$(POD_NAME)" not in c["args"]:
    fail("the node id is not the pod name")
drain = next(int(a.split("=")[1]) for a in c["args"] if a.startswith("--drain-secs="))
if spec.get("terminationGracePeriodSeconds", 0) <= drain:
    fail("terminationGracePeriodSeconds does not cover --drain-secs=%d" % drain)
if "seccompProfile" not in c.get("securityContext", {}):
    fail("no seccompProfile for io_uring")
if "podAntiAffinity" not in spec.get("affinity", {}):
    fail("no pod anti-affinity")
(c,) = full["Deployment"][0]["spec"]["template"]["spec"]["containers"]
for flag in ("--auth-jwt-secret-file=", "--auth-jwt-public-key-file=", "--api-key-file=", "--config="):
    if not any(a.startswith(flag) for a in c["args"]):
        fail("with every option set, no %s argument" % flag)
if not all(m.get("readOnly") for m in c.get("volumeMounts", [])):
    fail("a secret or config mount is not read-only")
if "ConfigMap" not in full:
    fail("values.config renders no ConfigMap")
print("config: the Helm chart renders %d objects (%d with every option)"
      % (sum(map(len, default.values())), sum(map(len, full.values()))))
PYEOF

  # Pinned images everywhere: no `latest`, no missing tag; the engine at the
  # workspace version, Kafka at the version the tests run (kafka.sh).
  "$py" - "$tmp/helm-default.yaml" <<'PYEOF'
import glob, re, sys, tomllib, yaml

def fail(msg):
    sys.exit("config: images: " + msg)

def tag(image):
    if "@sha256:" in image:
        return "digest"
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""

images = []  # (where, image)
compose = yaml.safe_load(open("deploy/docker-compose.yml"))
for name, s in compose["services"].items():
    images.append(("docker-compose.yml %s" % name, s["image"]))

def pod_images(doc, where):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        images.append((where, c["image"]))

for path in sorted(glob.glob("deploy/k8s/*.yaml")) + [sys.argv[1]]:
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            pod_images(doc, path if path.startswith("deploy/") else "helm template")
for path in sorted(glob.glob("deploy/**/Dockerfile*", recursive=True)):
    for line in open(path):
        m = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)", line, re.I)
        if m:
            images.append((path, m.group(1)))
for where, image in images:
    if tag(image) in ("", "latest"):
        fail("%s: %s is not pinned to a version" % (where, image))

version = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"]
chart = yaml.safe_load(open("deploy/helm/chat-engine/Chart.yaml"))
if chart["appVersion"] != version:
    fail("Chart.yaml appVersion %s, workspace version %s" % (chart["appVersion"], version))
for where, image in images:
    if image.startswith("chat-engine:") and tag(image) != version:
        fail("%s: %s, workspace version %s" % (where, image, version))
kafka_version = re.search(r'^KAFKA_VERSION="([^"]+)"', open("deploy/kafka/kafka.sh").read(), re.M).group(1)
for where, image in images:
    if image.startswith("apache/kafka:") and tag(image) != kafka_version:
        fail("%s: %s, but deploy/kafka/kafka.sh runs Kafka %s" % (where, image, kafka_version))
print("config: %d images pinned; engine %s, Kafka %s" % (len(images), version, kafka_version))
PYEOF

  # The dashboard's PromQL names only metrics the engine exposes (the fixture
  # lists them); the extractor's own tests; and a missing family is reported.
  local check=deploy/grafana/check-metrics.py dash=deploy/grafana/chat-engine.json out
  python3 "$check" --self-test
  python3 "$check" "$dash" deploy/grafana/testdata/metrics.txt
  grep -v 'chat_fanout_size' deploy/grafana/testdata/metrics.txt >"$tmp/metrics-partial.txt"
  if out="$(python3 "$check" "$dash" "$tmp/metrics-partial.txt")" ||
    ! grep -q '^  missing chat_fanout_size ' <<<"$out"; then
    log "check-metrics.py did not report the missing chat_fanout_size: $out"
    return 1
  fi

  shellcheck -x -S warning deploy/test.sh deploy/cluster.sh deploy/lib.sh .ci/run \
    deploy/kafka/kafka.sh deploy/kafka/perf.sh benches/gate.sh
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
  local state="$WORK/cluster" base pids pid left=() kafka_before=0 metrics_ok=1 metrics
  ensure_nginx
  ensure_node_modules
  ensure_chromium
  export CLUSTER_STATE="$state" CLUSTER_PORT="${TEST_CLUSTER_PORT:-$(free_port_run 3)}"
  port_open "$KAFKA_PORT" && kafka_before=1
  base="http://127.0.0.1:$CLUSTER_PORT$CHAT_BASE_PATH"
  trap 'bash deploy/cluster.sh down >/dev/null 2>&1 || true' EXIT

  # Node K listens on CLUSTER_PORT+K; the clients check its request counters there.
  metrics=(--metrics "http://127.0.0.1:$((CLUSTER_PORT + 1))/metrics"
    --metrics "http://127.0.0.1:$((CLUSTER_PORT + 2))/metrics")

  bash deploy/cluster.sh up --nodes 2
  node "$COMPAT_DIR/compat.mjs" --cluster --nodes 2 "${metrics[@]}" "$base"

  # A browser where WebSockets are blocked: the pages fall back to SockJS's HTTP
  # transports, cross-origin, through nginx's session hash.
  log "cluster: headless Chromium on xhr-streaming, eventsource and xhr-polling"
  node "$COMPAT_DIR/browser.mjs" --out "$WORK/browser" "${metrics[@]}" "$base"

  # Every metric the Grafana dashboard queries must exist on each node (node K
  # listens on CLUSTER_PORT+K). Checked after traffic, so that the node has seen
  # messages; a failure fails the stage, but only after the rest of it has run.
  log "cluster: checking the dashboard's metrics on node1 and node2 (check-metrics.py)"
  python3 deploy/grafana/check-metrics.py deploy/grafana/chat-engine.json \
    "http://127.0.0.1:$((CLUSTER_PORT + 1))/metrics" "http://127.0.0.1:$((CLUSTER_PORT + 2))/metrics" ||
    metrics_ok=0

  # A restarted node must get clients again through nginx (max_fails/fail_timeout).
  log "cluster: restarting node2"
  bash deploy/cluster.sh stop-node 2
  bash deploy/cluster.sh up --nodes 2
  node "$COMPAT_DIR/compat.mjs" --cluster --nodes 2 "${metrics[@]}" "$base"

  # Zero loss across faults: subscribers spread by nginx over both nodes resume with
  # x-since (loadgen --resume) while a publisher straight on node2 goes on; a kill -9
  # of node1, a rolling restart and a broker outage must cost no subscriber a
  # message, a duplicate or an inversion. A publisher's own node going down costs it
  # what the node had not yet accepted; that is counted as unsent, not lost.
  local drill=(--target "http://127.0.0.1:$((CLUSTER_PORT + 2))$CHAT_BASE_PATH"
    --target "$base" --target "$base" --target "$base" --connections 41 --channels 1
    --publishers 1 --rate 50 --warmup 2 --resume --fail-on-loss --fail-on-reorder --quiet
    --out "$WORK/drills")
  log "cluster: kill -9 of node1 under load; its subscribers resume on node2"
  bash deploy/cluster.sh chaos --kill 1 --after 5 -- "${drill[@]}" --duration 10 --grace 8
  log "cluster: rolling restart under load"
  bash deploy/cluster.sh chaos --rolling --after 4 -- "${drill[@]}" --duration 20 --grace 8
  # While the broker is away node2's subscribers get node2's messages at once and
  # node1's get them when it is back: the grace covers the outage.
  log "cluster: the broker stops for 5 s under load"
  bash deploy/cluster.sh chaos --broker 5 --after 4 -- "${drill[@]}" --duration 15 --grace 45

  # The same clients over TLS (https, wss), trusting only the cluster's own certificate.
  log "cluster: nginx on TLS"
  bash deploy/cluster.sh up --nodes 2 --tls
  NODE_EXTRA_CA_CERTS="$state/tls/cert.pem" \
    node "$COMPAT_DIR/compat.mjs" --cluster --nodes 2 "${metrics[@]}" "https://127.0.0.1:$CLUSTER_PORT$CHAT_BASE_PATH"
  # loadgen through the same TLS (rustls, trusting cert.pem): wss:// and https://, and
  # SockJS's HTTP transports, whose responses nginx re-frames as chunked.
  log "cluster: loadgen over wss://, https:// and the HTTP transports through nginx's TLS"
  local tls_base="https://127.0.0.1:$CLUSTER_PORT$CHAT_BASE_PATH" transport
  for target in "wss://127.0.0.1:$CLUSTER_PORT/ws" "$tls_base"; do
    bash deploy/cluster.sh bench --target "$target" --connections 100 --channels 10 --publishers 10 \
      --rate 200 --duration 2 --warmup 1 --fail-on-loss --out "$WORK/loadgen-tls" --quiet
  done
  for transport in xhr-streaming xhr-polling; do
    bash deploy/cluster.sh bench --target "$tls_base" --transport "$transport" --connections 40 \
      --channels 4 --publishers 4 --rate 100 --duration 2 --warmup 1 --fail-on-loss \
      --out "$WORK/loadgen-$transport" --quiet
  done

  pids="$(cat "$state"/node*.pid "$state/nginx/nginx.pid" 2>/dev/null | tr '\n' ' ')"
  bash deploy/cluster.sh down
  bash deploy/cluster.sh down # safe to repeat
  trap - EXIT
  for pid in $pids; do
    # A zombie that init has not reaped yet has stopped all the same.
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in
      '' | Z*) ;;
      *) left+=("pid $pid") ;;
    esac
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
  if [ "$metrics_ok" = 0 ]; then
    log "cluster: the Grafana dashboard queries metrics the nodes do not expose (see above)"
    return 1
  fi
}

main "$@"
