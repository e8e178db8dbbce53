//! JavaScript client compatibility: runs `tests/compat/compat.mjs` against a
//! two-shard engine. It drives @stomp/stompjs 7 over raw WebSocket, the original
//! React client's sockjs-client 1.6 + stompjs 2.3.3, the two mixed, and sockjs-client
//! forced to each HTTP transport (xhr-streaming, xhr-polling, eventsource; see the
//! script's header). Streaming responses end every 4 KiB here, so the clients reopen
//! them mid-test, and sessions move between the two shards. Needs `node` and `npm ci`
//! in tests/compat (deploy/test.sh does it); skips without them unless
//! CHAT_REQUIRE_EXTERNAL=1. `tests/compat/resume.mjs` runs the README's resuming
//! @stomp/stompjs client across a dropped socket, `tests/compat/auth.mjs` the
//! authentication flows.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{node_available, run_with_timeout, skip_unless_required, Engine};

/// compat.mjs stops itself after 30 s; this only guards against a hung node.
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn javascript_clients_work_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    if !node_available() {
        return skip_unless_required("node is not on PATH");
    }
    if !dir.join("node_modules").is_dir() {
        return skip_unless_required("tests/compat/node_modules is missing (run `npm ci` there)");
    }

    let mut engine = Engine::start(&["--shards", "2", "--sockjs-response-limit-bytes", "4096"]);
    let (passed, output) = run_with_timeout(
        Command::new("node")
            .arg(dir.join("compat.mjs"))
            .arg(engine.base_url())
            .current_dir(&dir),
        "compat",
        NODE_TIMEOUT,
    );
    let status = engine.stop();
    println!("{output}");
    assert!(
        passed,
        "compat.mjs failed:\n{output}\nengine log {}:\n{}",
        engine.log_path().display(),
        engine.log_tail(40)
    );
    assert!(
        status.success(),
        "chat-engine did not exit cleanly on SIGTERM: {status}"
    );
}

/// The README's resuming client: after its socket drops it resubscribes with `x-since`
/// and ends with every message once, in order.
#[test]
fn the_readme_resuming_client_loses_and_repeats_nothing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    if !node_available() {
        return skip_unless_required("node is not on PATH");
    }
    if !dir.join("node_modules").is_dir() {
        return skip_unless_required("tests/compat/node_modules is missing (run `npm ci` there)");
    }
    let engine = Engine::start(&["--shards", "2"]);
    let (passed, output) = run_with_timeout(
        Command::new("node")
            .arg(dir.join("resume.mjs"))
            .arg(format!("ws://127.0.0.1:{}/ws", engine.port()))
            .current_dir(&dir),
        "resume",
        NODE_TIMEOUT,
    );
    println!("{output}");
    assert!(
        passed,
        "resume.mjs failed:\n{output}\nengine log:\n{}",
        engine.log_tail(40)
    );
}

/// `tests/compat/auth.mjs`: @stomp/stompjs 7 against an engine with authentication and
/// an Origin allow-list on (tokens signed in node; see the script's header).
#[test]
fn javascript_clients_authenticate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    if !node_available() {
        return skip_unless_required("node is not on PATH");
    }
    if !dir.join("node_modules").is_dir() {
        return skip_unless_required("tests/compat/node_modules is missing (run `npm ci` there)");
    }
    const SECRET: &str = "compat auth secret";
    const ORIGIN: &str = "http://app.test";
    let secret = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("compat-auth-secret-{}", std::process::id()));
    std::fs::write(&secret, SECRET).expect("write the secret");
    let secret_arg = secret.to_str().expect("utf-8 path");
    let mut engine = Engine::start(&[
        "--shards",
        "1",
        "--auth-jwt-secret-file",
        secret_arg,
        "--allowed-origins",
        ORIGIN,
    ]);
    let (passed, output) = run_with_timeout(
        Command::new("node")
            .arg(dir.join("auth.mjs"))
            .args(["--secret", SECRET, "--origin", ORIGIN])
            .arg(engine.base_url())
            .current_dir(&dir),
        "auth",
        NODE_TIMEOUT,
    );
    engine.stop();
    println!("{output}");
    assert!(
        passed,
        "auth.mjs failed:\n{output}\nengine log {}:\n{}",
        engine.log_path().display(),
        engine.log_tail(40)
    );
}
