# shellcheck shell=bash
# Shell helpers shared by deploy/test.sh and deploy/cluster.sh (sourced, not run).
#
# Needs bash; uses /dev/tcp for HTTP so that no curl is required. Every function
# prints its complaints to stderr and returns non-zero instead of exiting.

# Repository root and the places derived from it.
CHAT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHAT_TARGET="${CARGO_TARGET_DIR:-$CHAT_ROOT/target}"
case "$CHAT_TARGET" in /*) ;; *) CHAT_TARGET="$CHAT_ROOT/$CHAT_TARGET" ;; esac
CHAT_ENGINE_BIN="${CHAT_ENGINE_BIN:-$CHAT_TARGET/release/chat-engine}"
CHAT_LOADGEN_BIN="${CHAT_LOADGEN_BIN:-$CHAT_TARGET/release/loadgen}"
CHAT_BASE_PATH="${CHAT_BASE_PATH:-/letters-chat-server}"
KAFKA_SH="${KAFKA_SH:-$CHAT_ROOT/deploy/kafka/kafka.sh}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
# kafka.sh's SASL_PLAINTEXT listener (SCRAM test user), for the engine's Kafka security test.
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}"
export KAFKA_PORT KAFKA_SASL_PORT

log() { printf '%s: %s\n' "${CHAT_LOG_NAME:-deploy}" "$*" >&2; }

# apt_install PKG...: install Debian packages (root only; runs apt-get update once).
apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "need $*, but cannot install it here (not root or no apt-get); install it and re-run"
    return 1
  fi
  if [ -z "${CHAT_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    CHAT_APT_UPDATED=1
  fi
  log "installing $* with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# ensure_build_deps: what building the engine needs beyond cargo: OpenSSL's headers
# and pkg-config to find them (librdkafka's TLS and SASL/SCRAM).
ensure_build_deps() {
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl && return 0
  apt_install pkg-config libssl-dev
}

# ensure_nginx: nginx on PATH (sbin included), installed from Debian when missing.
ensure_nginx() {
  case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin" ;; esac
  command -v nginx >/dev/null 2>&1 && return 0
  apt_install nginx || return 1
  # Debian starts the packaged service on port 80 where systemd runs; the tests
  # and the cluster run their own nginx on their own prefix, so stop that one.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    log "stopping the nginx service that apt-get started (not used here)"
    systemctl stop nginx || true
  fi
  command -v nginx >/dev/null 2>&1
}

# port_open PORT [HOST]: true when something accepts TCP connections there.
port_open() {
  { : <>"/dev/tcp/${2:-127.0.0.1}/$1"; } 2>/dev/null
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# free_port_run N: print P such that nothing listens on P .. P+N-1 right now.
free_port_run() {
  local n="$1" base i
  while :; do
    base=$((20000 + RANDOM % 10000))
    for ((i = 0; i < n; i++)); do
      port_open $((base + i)) && continue 2
    done
    printf '%s\n' "$base"
    return 0
  done
}

# http_head HOST PORT PATH: print the status line and headers of a GET (HTTP/1.0,
# so the server closes the connection); fails when nothing accepts the connection.
http_head() {
  local host="$1" port="$2" path="$3" fd line
  { exec {fd}<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" 1>&"$fd" 2>/dev/null || true
  while IFS= read -r -t 5 line <&"$fd"; do
    line="${line%$'\r'}"
    [ -z "$line" ] && break
    printf '%s\n' "$line"
  done
  exec {fd}<&-
}

# http_status HOST PORT PATH: print the HTTP status code (000 when nothing answered).
http_status() {
  local code
  code="$(http_head "$@" | head -n 1 | cut -d' ' -f2)"
  printf '%s\n' "${code:-000}"
}

# https_head HOST PORT PATH CAFILE: http_head over TLS, trusting only CAFILE; the
# certificate must name HOST (an IP address) among its subject alternative names.
https_head() {
  local host="$1" port="$2" path="$3" ca="$4"
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" |
    timeout 5 openssl s_client -quiet -connect "$host:$port" -CAfile "$ca" \
      -verify_return_error -verify_ip "$host" 2>/dev/null |
    sed -e 's/\r$//' -e '/^$/q'
}

# https_status HOST PORT PATH CAFILE: the status code over TLS (000: no answer).
https_status() {
  local code
  code="$(https_head "$@" | head -n 1 | cut -d' ' -f2)"
  printf '%s\n' "${code:-000}"
}

# ensure_tls_cert DIR: DIR/cert.pem and DIR/key.pem, a self-signed ECDSA P-256
# certificate for 127.0.0.1 and localhost (for tests and local clusters only). An
# existing pair is kept, so clients that trust it keep working across runs. It is a
# leaf (CA:FALSE), trusted as it is: rustls (loadgen) refuses a CA used as a leaf.
ensure_tls_cert() {
  local dir="$1"
  [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && return 0
  command -v openssl >/dev/null 2>&1 || apt_install openssl || return 1
  mkdir -p "$dir"
  log "making a self-signed certificate for 127.0.0.1 and localhost in $dir"
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 825 -subj "/CN=chat-engine local cluster" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$dir/key.pem.partial" -out "$dir/cert.pem.partial" 2>/dev/null) || {
    log "openssl could not make a certificate in $dir"
    return 1
  }
  mv "$dir/key.pem.partial" "$dir/key.pem"
  mv "$dir/cert.pem.partial" "$dir/cert.pem"
}

# wait_healthz PORT SECS [PID] [LOGFILE]: wait until GET /healthz on PORT answers
# 200. Fails early when PID dies, and shows the tail of LOGFILE on failure.
wait_healthz() {
  local port="$1" secs="$2" pid="${3:-}" logfile="${4:-}" deadline code
  deadline=$(( $(date +%s) + secs ))
  while :; do
    code="$(http_status 127.0.0.1 "$port" /healthz)"
    [ "$code" = 200 ] && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited before 127.0.0.1:$port/healthz answered 200"
      show_tail "$logfile"
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "127.0.0.1:$port/healthz still answers $code after ${secs}s"
      show_tail "$logfile"
      return 1
    fi
    sleep 0.2
  done
}

# show_tail FILE: the last lines of a log, indented, on stderr.
show_tail() {
  [ -n "${1:-}" ] && [ -s "$1" ] || return 0
  log "last lines of $1:"
  tail -n 30 "$1" | sed 's/^/    /' >&2
}

# pid_matches PID WORD: true when PID is alive and its command line contains WORD
# (guards against killing an unrelated process that reused a stale pid).
pid_matches() {
  local pid="$1" word="$2"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *"$word"* ]]
}

# stop_pid PID WORD [SECS]: SIGTERM (the engine drains), then SIGKILL after SECS.
stop_pid() {
  local pid="$1" word="$2" secs="${3:-10}" i
  pid_matches "$pid" "$word" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    # Gone, or a zombie nobody reaps yet (its cmdline is empty): either way, stopped.
    pid_matches "$pid" "$word" || return 0
    sleep 0.1
  done
  log "$word (pid $pid) still running after ${secs}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.2
}

# render_nginx_conf [--tls CERT KEY] RUNDIR LISTEN UPSTREAM_ADDR...: write
# RUNDIR/nginx.conf from deploy/nginx/nginx.conf.tmpl, with every path inside RUNDIR.
# A template line holding @UPSTREAM@ is repeated once per upstream address; lines
# marked @TLS@ are kept with --tls (the listener speaks TLS), @PLAIN@ ones without.
render_nginx_conf() {
  local cert="" key="" keep=@PLAIN@ drop=@TLS@ user="" line addr indent
  if [ "${1:-}" = --tls ]; then
    cert="$2" key="$3" keep=@TLS@ drop=@PLAIN@
    shift 3
  fi
  local rundir="$1" listen="$2"
  shift 2
  mkdir -p "$rundir/tmp"
  # `user` only means something to a master started as root; without it, root's
  # workers would run as nobody and could not use the temp dirs made here.
  [ "$(id -u)" -eq 0 ] && user="user root;"
  while IFS= read -r line || [ -n "$line" ]; do
    indent="${line%%[! ]*}"
    case "${line#"$indent"}" in
      "$drop"*) continue ;;
      "$keep"*) line="$indent${line#"$indent$keep"}" ;;
    esac
    line="${line//@TLS_CERT@/$cert}"
    line="${line//@TLS_KEY@/$key}"
    line="${line//@USER_DIRECTIVE@/$user}"
    line="${line//@RUNDIR@/$rundir}"
    line="${line//@LISTEN@/$listen}"
    line="${line//@BASE_PATH@/$CHAT_BASE_PATH}"
    if [[ "$line" == *@UPSTREAM@* ]]; then
      for addr in "$@"; do printf '%s\n' "${line//@UPSTREAM@/$addr}"; done
    else
      printf '%s\n' "$line"
    fi
  done <"$CHAT_ROOT/deploy/nginx/nginx.conf.tmpl" >"$rundir/nginx.conf"
}

# nginx_cmd RUNDIR ARGS...: run nginx on a config and prefix inside RUNDIR.
nginx_cmd() {
  local rundir="$1"
  shift
  nginx -p "$rundir" -c "$rundir/nginx.conf" -e "$rundir/error.log" "$@"
}

# ensure_shellcheck: shellcheck on PATH, installed from Debian when missing.
ensure_shellcheck() {
  command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
}

# ensure_helm: print the path of a helm $CHAT_HELM_VERSION binary, built once from
# the Go module proxy into deploy/.cache/bin (no download site needed, as Kafka
# comes from Maven Central). The ldflags are those of helm's own Makefile: the
# version it reports, and the Kubernetes version that `lint` and `template`
# assume (1.36: helm v3.21 builds on client-go v0.36).
CHAT_HELM_VERSION="${CHAT_HELM_VERSION:-v3.21.4}"
ensure_helm() {
  local bin_dir="$CHAT_ROOT/deploy/.cache/bin" pkg=helm.sh/helm/v3
  local helm="$bin_dir/helm" k8s_minor="${CHAT_HELM_K8S_MINOR:-36}"
  if [ -x "$helm" ] && [ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" = "$CHAT_HELM_VERSION" ]; then
    printf '%s\n' "$helm"
    return 0
  fi
  command -v go >/dev/null 2>&1 || { log "need go to build helm $CHAT_HELM_VERSION"; return 1; }
  log "building helm $CHAT_HELM_VERSION from the Go module proxy into $bin_dir (a few minutes, once)"
  mkdir -p "$bin_dir"
  GOBIN="$bin_dir" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w \
    -X $pkg/internal/version.version=$CHAT_HELM_VERSION \
    -X $pkg/pkg/lint/rules.k8sVersionMajor=1 -X $pkg/pkg/lint/rules.k8sVersionMinor=$k8s_minor \
    -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$k8s_minor" \
    "$pkg/cmd/helm@$CHAT_HELM_VERSION" >&2 || return 1
  printf '%s\n' "$helm"
}
