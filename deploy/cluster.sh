#!/usr/bin/env bash
# A local chat-engine cluster as plain processes: Kafka, N engines, nginx in front.
#
#   cluster.sh up [--nodes N]     start (or complete) a cluster of N engines (default 2)
#            [--tls]              with nginx on TLS, kept until down (see below)
#   cluster.sh down               stop everything `up` started; safe to repeat
#   cluster.sh status             what runs and whether /healthz answers 200
#   cluster.sh logs [-f] [NAME]   engine and nginx logs (NAME: node1, node2, ..., nginx)
#   cluster.sh stop-node K        drain and stop engine K (`up` starts it again)
#   cluster.sh kill-node K        kill -9 engine K: its clients' sockets just close
#   cluster.sh restart-node K     SIGTERM engine K (clients get close 1001), start it
#                                 again, wait until it is healthy and nginx uses it
#   cluster.sh rolling-restart [--pause S]   restart-node every engine, one at a time
#   cluster.sh bench [ARGS...]    loadgen through nginx; results in results/<timestamp>/
#   cluster.sh chaos (--kill K | --restart K | --rolling | --broker D) [--after S]
#                    [-- ARGS...] bench ARGS with that fault S s (10) after loadgen
#                                 starts; --broker D stops Kafka for D s
#   cluster.sh demo               up --nodes 2, bench, down, print the latency table
#
# nginx listens on 127.0.0.1:$CLUSTER_PORT (8080); engine K on CLUSTER_PORT+K
# (8081, 8082, ...) with --node-id nodeK, one shard pinned to CPU (K-1) mod ncores.
# Kafka comes from deploy/kafka/kafka.sh, stopped by `down` only if `up` started it.
# Pid files, logs and the nginx run dir live in $CLUSTER_STATE (deploy/.cache/cluster).
# kill-node, restart-node and rolling-restart may run beside a bench (another shell, or
# chaos): they only read and rewrite nodeK.pid. A killed node keeps its pid file, so
# restart-node (or up) brings it back; chaos restarts a node it killed once the bench ends.
# With --tls nginx serves https/wss on the same port with a self-signed certificate
# for 127.0.0.1 and localhost, made once in $CLUSTER_STATE/tls (cert.pem is the CA
# to trust) and kept across runs; engines stay plain HTTP behind it.
# demo sizes its load to the host's cores (see demo_load; DEMO_SCALE=N as if N cores).
# Environment: CLUSTER_PORT, CLUSTER_STATE, CLUSTER_SHARDS (shards per engine, 1),
# CHAT_ENGINE_BIN / CHAT_LOADGEN_BIN (default target/release; set to skip the build),
# CHAT_ENGINE_ARGS (extra engine flags), CHAT_BASE_PATH, KAFKA_PORT, KAFKA_SH.
set -euo pipefail

CHAT_BINS_GIVEN="${CHAT_ENGINE_BIN:+1}"
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CHAT_LOG_NAME=cluster

STATE="${CLUSTER_STATE:-$CHAT_ROOT/deploy/.cache/cluster}"
NGINX_DIR="$STATE/nginx"
TLS_DIR="$STATE/tls"
# Present while the cluster runs with --tls, so a later `up` keeps TLS on.
TLS_MARKER="$STATE/tls.on"
PORT="${CLUSTER_PORT:-8080}"
SHARDS="${CLUSTER_SHARDS:-1}"
READY_SECS=60

die() {
  log "$*"
  exit 1
}

usage() {
  sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# ---------------------------------------------------------------- up

cmd_up() {
  local nodes=2 k
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="${2:-}"; shift 2 || usage ;;
      --nodes=*) nodes="${1#--nodes=}"; shift ;;
      --tls) mkdir -p "$STATE" && touch "$TLS_MARKER"; shift ;;
      *) usage ;;
    esac
  done
  [[ "$nodes" =~ ^[1-9][0-9]?$ ]] || die "--nodes wants a number from 1 to 99, not '$nodes'"
  mkdir -p "$STATE"
  if tls_on; then
    ensure_tls_cert "$TLS_DIR" || die "no TLS certificate"
  fi
  # Every client socket is a descriptor: use the whole hard limit.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

  build_if_needed
  ensure_nginx || die "nginx is missing"
  start_kafka
  for k in $(node_numbers); do
    [ "$k" -le "$nodes" ] || cmd_stop_node "$k"
  done
  for ((k = 1; k <= nodes; k++)); do start_node "$k"; done
  for ((k = 1; k <= nodes; k++)); do
    wait_healthz "$((PORT + k))" "$READY_SECS" "$(cat "$STATE/node$k.pid")" "$STATE/node$k.log" ||
      die "node$k did not become healthy"
  done
  start_nginx "$nodes"
  wait_nginx "$nodes"
  if tls_on; then
    log "up: $nodes node(s) behind nginx: https://127.0.0.1:$PORT$CHAT_BASE_PATH (SockJS)," \
      "wss://127.0.0.1:$PORT/ws (STOMP); self-signed, trust $TLS_DIR/cert.pem"
  else
    log "up: $nodes node(s) behind nginx: http://127.0.0.1:$PORT$CHAT_BASE_PATH (SockJS)," \
      "ws://127.0.0.1:$PORT/ws (STOMP)"
  fi
}

build_if_needed() {
  if [ -n "$CHAT_BINS_GIVEN" ]; then
    [ -x "$CHAT_ENGINE_BIN" ] || die "CHAT_ENGINE_BIN=$CHAT_ENGINE_BIN is not executable"
  elif command -v cargo >/dev/null 2>&1; then
    ensure_build_deps || die "cannot build without pkg-config and OpenSSL's headers (libssl-dev)"
    # The same command as deploy/test.sh, so that neither rebuilds for the other.
    (cd "$CHAT_ROOT" && cargo build --workspace --release --bins) || die "cargo build failed"
  else
    [ -x "$CHAT_ENGINE_BIN" ] || die "no cargo and no $CHAT_ENGINE_BIN"
  fi
}

start_kafka() {
  if [ ! -f "$STATE/kafka.ours" ] && port_open "$KAFKA_PORT"; then
    log "using the Kafka already listening on 127.0.0.1:$KAFKA_PORT (down leaves it running)"
    return 0
  fi
  [ -f "$KAFKA_SH" ] || die "$KAFKA_SH not found"
  # Mark it first: if start fails halfway, down still stops what it left.
  touch "$STATE/kafka.ours"
  bash "$KAFKA_SH" start || die "kafka.sh start failed"
}

# start_node K [append]: start engine K unless it runs; `append` keeps its old log.
start_node() {
  local k="$1" port=$((PORT + $1)) pidfile="$STATE/node$1.pid" ncores cpus="" s
  local -a extra=()
  local logfile="$STATE/node$1.log"
  if pid_matches "$(cat "$pidfile" 2>/dev/null)" "--node-id node$k "; then
    return 0
  fi
  port_open "$port" && die "port $port (node$k) is taken by another process"
  ncores="$(nproc)"
  for ((s = 0; s < SHARDS; s++)); do
    cpus+="${cpus:+,}$(((((k - 1) * SHARDS) + s) % ncores))"
  done
  read -ra extra <<<"${CHAT_ENGINE_ARGS:-}"
  # A restart keeps what the last run said (why it stopped) above what this one says.
  [ "${2:-}" = append ] || : >"$logfile"
  setsid "$CHAT_ENGINE_BIN" --listen "127.0.0.1:$port" --node-id "node$k" \
    --kafka-brokers "127.0.0.1:$KAFKA_PORT" --shards "$SHARDS" --cpus "$cpus" \
    --base-path "$CHAT_BASE_PATH" "${extra[@]}" \
    >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "node$k: pid $!, 127.0.0.1:$port, cpus $cpus, log $logfile"
}

start_nginx() {
  local nodes="$1" k pid
  local -a addrs=()
  local -a tls=()
  for ((k = 1; k <= nodes; k++)); do addrs+=("127.0.0.1:$((PORT + k))"); done
  tls_on && tls=(--tls "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem")
  render_nginx_conf "${tls[@]}" "$NGINX_DIR" "127.0.0.1:$PORT" "${addrs[@]}"
  nginx_cmd "$NGINX_DIR" -t -q || die "nginx rejects $NGINX_DIR/nginx.conf"
  pid="$(cat "$NGINX_DIR/nginx.pid" 2>/dev/null || true)"
  if pid_matches "$pid" "$NGINX_DIR/nginx.conf"; then
    nginx_cmd "$NGINX_DIR" -s reload || die "nginx reload failed"
    sleep 0.5 # the new workers take over the listener
  else
    port_open "$PORT" && die "port $PORT (nginx) is taken by another process"
    nginx_cmd "$NGINX_DIR" || die "nginx did not start; see $NGINX_DIR/error.log"
    log "nginx: 127.0.0.1:$PORT, config $NGINX_DIR/nginx.conf"
  fi
}

# Through nginx, /healthz must answer 200 from every engine (the X-Chat-Upstream
# header says which one answered; with no open sockets least_conn rotates).
wait_nginx() {
  local nodes="$1" k
  local -a all=()
  for ((k = 1; k <= nodes; k++)); do all+=("$k"); done
  wait_nginx_sees "${all[@]}"
}

# wait_nginx_sees K...: until /healthz through nginx has been answered by each engine K.
# A restarted engine has the fewest sockets, so least_conn picks it as soon as nginx
# stops counting it failed (fail_timeout after its last failed attempt).
wait_nginx_sees() {
  local deadline head upstream k missing
  local -A seen=()
  deadline=$(($(date +%s) + READY_SECS))
  while :; do
    head="$(nginx_head /healthz || true)"
    if [ "$(printf '%s\n' "$head" | head -n 1 | cut -d' ' -f2)" = 200 ]; then
      upstream="$(printf '%s\n' "$head" | sed -n 's/^[Xx]-[Cc]hat-[Uu]pstream: *//p' | tr -d ' ')"
      seen["${upstream##*,}"]=1
    fi
    missing=""
    for k in "$@"; do
      [ -n "${seen["127.0.0.1:$((PORT + k))"]:-}" ] || missing+=" node$k"
    done
    [ -z "$missing" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      show_tail "$NGINX_DIR/error.log"
      die "through nginx, /healthz never answered 200 from:$missing"
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------- down, status, logs

cmd_down() {
  local k
  [ -d "$STATE" ] || return 0
  stop_pid "$(cat "$NGINX_DIR/nginx.pid" 2>/dev/null || true)" "$NGINX_DIR/nginx.conf" 10
  rm -f "$NGINX_DIR/nginx.pid"
  for k in $(node_numbers); do cmd_stop_node "$k"; done
  rm -f "$TLS_MARKER"
  if [ -f "$STATE/kafka.ours" ]; then
    bash "$KAFKA_SH" stop || die "kafka.sh stop failed"
    rm -f "$STATE/kafka.ours"
  fi
  log "down: nothing of the cluster runs"
}

cmd_stop_node() {
  local k="${1:-}"
  [[ "$k" =~ ^[0-9]+$ ]] || usage
  stop_pid "$(cat "$STATE/node$k.pid" 2>/dev/null || true)" "--node-id node$k " 20
  rm -f "$STATE/node$k.pid"
}

# ---------------------------------------------------------------- faults

cmd_kill_node() {
  local k="${1:-}" pid i
  [[ "$k" =~ ^[0-9]+$ ]] || usage
  pid="$(cat "$STATE/node$k.pid" 2>/dev/null || true)"
  pid_matches "$pid" "--node-id node$k " || die "node$k is not running"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_matches "$pid" "--node-id node$k " || break
    sleep 0.1
  done
  log "node$k: killed (pid $pid, SIGKILL); restart-node $k or up brings it back"
}

cmd_restart_node() {
  local k="${1:-}" pidfile pid
  [[ "$k" =~ ^[0-9]+$ ]] || usage
  pidfile="$STATE/node$k.pid"
  [ -f "$pidfile" ] || die "node$k is not part of the cluster (no $pidfile; use up)"
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if pid_matches "$pid" "--node-id node$k "; then
    log "node$k: restarting (SIGTERM: its clients get close 1001)"
    stop_pid "$pid" "--node-id node$k " 20
  else
    log "node$k: not running; starting it"
  fi
  start_node "$k" append
  wait_healthz "$((PORT + k))" "$READY_SECS" "$(cat "$pidfile")" "$STATE/node$k.log" ||
    die "node$k did not become healthy"
  wait_nginx_sees "$k"
  log "node$k: back, healthy, and nginx sends it traffic"
}

cmd_rolling_restart() {
  local pause=2 k first=1
  local -a nodes=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --pause) pause="${2:-}"; shift 2 || usage ;;
      --pause=*) pause="${1#--pause=}"; shift ;;
      *) usage ;;
    esac
  done
  [[ "$pause" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--pause wants seconds, not '$pause'"
  mapfile -t nodes < <(node_numbers)
  [ ${#nodes[@]} -gt 0 ] || die "no engines in $STATE (is the cluster up?)"
  for k in "${nodes[@]}"; do
    # Let the clients of the last one settle before the next one goes.
    [ "$first" = 1 ] || sleep "$pause"
    first=0
    cmd_restart_node "$k"
  done
  log "rolling-restart: ${#nodes[@]} node(s) restarted one by one"
}

# chaos FAULT [--after S] [-- ARGS...]: bench ARGS in the foreground (Ctrl-C ends it as
# usual) while a background job injects the fault S seconds after loadgen starts (its
# connecting and warm-up, 5 s by default, come first). A node killed is restarted once
# the bench is over, so the next run starts with the whole cluster.
cmd_chaos() {
  local fault="" k="" down="" after=10 injector status=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --kill | --restart) fault="${1#--}"; k="${2:-}"; shift 2 || usage ;;
      --rolling) fault=rolling; shift ;;
      --broker) fault=broker; down="${2:-}"; shift 2 || usage ;;
      --after) after="${2:-}"; shift 2 || usage ;;
      --after=*) after="${1#--after=}"; shift ;;
      --) shift; break ;;
      *) usage ;;
    esac
  done
  [ -n "$fault" ] || die "chaos wants --kill K, --restart K, --rolling or --broker D"
  [[ "$after" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--after wants seconds, not '$after'"
  if [ "$fault" = broker ]; then
    [[ "$down" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--broker wants seconds, not '$down'"
  elif [ "$fault" != rolling ]; then
    [[ "$k" =~ ^[0-9]+$ ]] || die "--$fault wants a node number, not '$k'"
    pid_matches "$(cat "$STATE/node$k.pid" 2>/dev/null || true)" "--node-id node$k " ||
      die "node$k is not running"
  fi
  (
    sleep "$after"
    log "chaos: ${fault}${k:+ node$k} at ${after}s"
    case "$fault" in
      kill) cmd_kill_node "$k" ;;
      restart) cmd_restart_node "$k" ;;
      rolling) cmd_rolling_restart ;;
      broker)
        bash "$KAFKA_SH" stop
        sleep "$down"
        bash "$KAFKA_SH" start
        ;;
    esac
  ) &
  injector=$!
  # shellcheck disable=SC2064 # the pid is known now and must not change
  trap "kill $injector 2>/dev/null || true" EXIT
  cmd_bench "$@" || status=$?
  wait "$injector" || log "chaos: the fault did not go as planned (see above)"
  trap - EXIT
  if [ "$fault" = kill ]; then
    cmd_restart_node "$k"
  fi
  return "$status"
}

cmd_status() {
  local k pid code bad=0 running=0
  for k in $(node_numbers); do
    pid="$(cat "$STATE/node$k.pid")"
    if pid_matches "$pid" "--node-id node$k "; then
      running=1
      code="$(http_status 127.0.0.1 "$((PORT + k))" /healthz)"
      printf 'node%-3s pid %-8s 127.0.0.1:%-6s healthz %s\n' "$k" "$pid" "$((PORT + k))" "$code"
      [ "$code" = 200 ] || bad=1
    else
      printf 'node%-3s not running (stale pid file)\n' "$k"
      bad=1
    fi
  done
  pid="$(cat "$NGINX_DIR/nginx.pid" 2>/dev/null || true)"
  if pid_matches "$pid" "$NGINX_DIR/nginx.conf"; then
    running=1
    code="$(nginx_head /healthz | head -n 1 | cut -d' ' -f2 || true)"
    code="${code:-000}"
    if nginx_speaks_tls; then
      printf 'nginx   pid %-8s https://127.0.0.1:%-6s healthz %s (TLS; trust %s)\n' \
        "$pid" "$PORT" "$code" "$TLS_DIR/cert.pem"
    else
      printf 'nginx   pid %-8s http://127.0.0.1:%-6s healthz %s\n' "$pid" "$PORT" "$code"
    fi
    [ "$code" = 200 ] || bad=1
  else
    printf 'nginx   not running\n'
    bad=1
  fi
  if port_open "$KAFKA_PORT"; then
    printf 'kafka   listening on 127.0.0.1:%s%s\n' "$KAFKA_PORT" \
      "$([ -f "$STATE/kafka.ours" ] && echo ' (started by cluster.sh)')"
  else
    printf 'kafka   not listening on 127.0.0.1:%s\n' "$KAFKA_PORT"
    bad=1
  fi
  [ "$running" = 1 ] || return 3
  return "$bad"
}

cmd_logs() {
  local follow=0 name
  local -a files=()
  [ "${1:-}" = -f ] && { follow=1; shift; }
  if [ $# -eq 0 ]; then
    for name in $(node_numbers); do files+=("$STATE/node$name.log"); done
    files+=("$NGINX_DIR/error.log")
  fi
  for name in "$@"; do
    case "$name" in
      nginx) files+=("$NGINX_DIR/error.log") ;;
      node[0-9]*) files+=("$STATE/$name.log") ;;
      *) die "unknown log '$name' (node1, node2, ..., nginx)" ;;
    esac
  done
  [ ${#files[@]} -gt 0 ] || die "no logs in $STATE (is the cluster up?)"
  if [ "$follow" = 1 ]; then
    exec tail -n 20 -F "${files[@]}"
  fi
  tail -n 50 "${files[@]}"
}

# ---------------------------------------------------------------- bench, demo

BENCH_OUT=""

cmd_bench() {
  local try
  # A few tries: right after a restart nginx may still be retrying a node it saw fail.
  for try in 1 2 3 4 5; do
    # The status line alone: a reader that stops early must not fail the pipe.
    case "$(nginx_head /healthz 2>/dev/null | head -n 1 || true)" in
      *' 200'*) break ;;
    esac
    [ "$try" = 5 ] && die "nothing healthy behind 127.0.0.1:$PORT (run: deploy/cluster.sh up)"
    sleep 1
  done
  [ -x "$CHAT_LOADGEN_BIN" ] || die "$CHAT_LOADGEN_BIN not built (cargo build --workspace --release --bins)"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  BENCH_OUT="$(opt_value --out "$@")"
  if [ -z "$BENCH_OUT" ]; then
    BENCH_OUT="$CHAT_ROOT/results/$(date +%Y%m%d-%H%M%S)"
    set -- --out "$BENCH_OUT" "$@"
  fi
  mkdir -p "$BENCH_OUT"
  local status=0
  run_loadgen "$@" | tee "$BENCH_OUT/table.txt" || status=$?
  log "bench: results in $BENCH_OUT"
  return "$status"
}

# The one place that knows loadgen's command line. The default scenario is a
# chat: 1000 users in 100 channels, 2000 messages/s of 128 bytes for 20 s.
# A flag given in ARGS replaces its default. With nginx on TLS, loadgen speaks
# https (or the wss:// target given) and trusts the cluster's certificate.
run_loadgen() {
  local -a args=(run)
  local scheme=http
  add_default() { [ -n "$(opt_value "$1" "${@:3}")" ] || args+=("$1" "$2"); }
  if nginx_speaks_tls; then
    scheme=https
    add_default --ca-file "$TLS_DIR/cert.pem" "$@"
  fi
  add_default --target "$scheme://127.0.0.1:$PORT$CHAT_BASE_PATH" "$@"
  add_default --connections 1000 "$@"
  add_default --channels 100 "$@"
  add_default --publishers 100 "$@"
  add_default --rate 2000 "$@"
  add_default --size 128 "$@"
  add_default --duration 20 "$@"
  add_default --warmup 5 "$@"
  # Each node's own /metrics (not through nginx) for the server CPU beside loadgen's.
  if [ -z "$(opt_value --metrics "$@")" ]; then
    local k
    for k in $(node_numbers); do args+=(--metrics "http://127.0.0.1:$((PORT + k))/metrics"); done
  fi
  log "bench: $CHAT_LOADGEN_BIN ${args[*]} $*"
  "$CHAT_LOADGEN_BIN" "${args[@]}" "$@"
}

# The demo's load follows the host: Kafka, two engines, nginx and loadgen all run on
# it, and bench's default chat (1000 users, 2000 msg/s = 20,000 deliveries/s) wants about
# ten cores for them to stay out of each other's way. Per core: 100 users in 10 channels,
# 200 msg/s (2,000 deliveries/s); capped at the full chat. DEMO_SCALE overrides the
# core count.
demo_load() {
  local cores scale
  cores="$(nproc)"
  scale="${DEMO_SCALE:-$cores}"
  [[ "$scale" =~ ^[1-9][0-9]*$ ]] || die "DEMO_SCALE wants a whole number of cores, not '$scale'"
  [ "$scale" -le 10 ] || scale=10
  DEMO_ARGS=(--connections $((100 * scale)) --channels $((10 * scale))
    --publishers $((10 * scale)) --rate $((200 * scale)))
  log "demo: $cores core(s) here, sized for $scale: $((100 * scale)) users in $((10 * scale))" \
    "channels, $((200 * scale)) msg/s ($((2000 * scale)) deliveries/s). Kafka, both engines," \
    "nginx and loadgen share these cores; the full chat (1000 users, 2000 msg/s) is sized for" \
    "10 (DEMO_SCALE=10 runs it here anyway, and the report's limit line says what gives first)"
}

cmd_demo() {
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'cmd_down' EXIT
  demo_load
  cmd_up --nodes 2
  cmd_bench "${DEMO_ARGS[@]}"
  trap - EXIT
  cmd_down
  printf '\nLatency through nginx, 2 nodes, %s (%s):\n' "${DEMO_ARGS[*]}" "$BENCH_OUT"
  cat "$BENCH_OUT/table.txt"
}

# ---------------------------------------------------------------- helpers

# opt_value FLAG ARGS...: the value of the last FLAG (as `FLAG V` or `FLAG=V`).
opt_value() {
  local flag="$1" value=""
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      "$flag") value="${2:-}"; shift ;;
      "$flag"=*) value="${1#"$flag"=}" ;;
    esac
    shift
  done
  printf '%s' "$value"
}

# tls_on: whether this cluster runs (or is to run) nginx with TLS.
tls_on() {
  [ -f "$TLS_MARKER" ]
}

# nginx_speaks_tls: whether the nginx config in use has a TLS listener.
nginx_speaks_tls() {
  grep -qE '^ *listen .* ssl' "$NGINX_DIR/nginx.conf" 2>/dev/null
}

# nginx_head PATH: the status line and headers of GET PATH through nginx, over TLS
# (checking the certificate) when nginx speaks it.
nginx_head() {
  if nginx_speaks_tls; then
    https_head 127.0.0.1 "$PORT" "$1" "$TLS_DIR/cert.pem"
  else
    http_head 127.0.0.1 "$PORT" "$1"
  fi
}

# node_numbers: K for every nodeK.pid in the state dir, ascending.
node_numbers() {
  local f
  for f in "$STATE"/node*.pid; do
    [ -e "$f" ] || continue
    f="${f##*/node}"
    printf '%s\n' "${f%.pid}"
  done | sort -n
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) cmd_logs "$@" ;;
  stop-node) cmd_stop_node "$@" ;;
  kill-node) cmd_kill_node "$@" ;;
  restart-node) cmd_restart_node "$@" ;;
  rolling-restart) cmd_rolling_restart "$@" ;;
  bench) cmd_bench "$@" ;;
  chaos) cmd_chaos "$@" ;;
  demo) cmd_demo ;;
  *) usage ;;
esac
