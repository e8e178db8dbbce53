//! The configuration's sources, precedence and checks, without a running engine.

use super::*;

fn load(args: &[&str]) -> Result<Config, Error> {
    Config::load(
        std::iter::once("chat-engine")
            .chain(args.iter().copied())
            .map(String::from),
    )
}

#[test]
fn defaults_are_valid() {
    let c = load(&[]).expect("defaults");
    assert_eq!(c.base_path, "/letters-chat-server");
    assert_eq!(c.listen.port(), 8080);
}

#[test]
fn cpu_lists_parse() {
    assert_eq!(parse_cpu_list("0,2-4"), Some(vec![0, 2, 3, 4]));
    assert_eq!(parse_cpu_list("3-1"), None);
    assert_eq!(parse_cpu_list("x"), None);
}

#[test]
fn bad_values_name_their_key() {
    let err = load(&["--shards", "0"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("`shards`"), "{err}");
    let err = load(&["--base-path", "x"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("`base-path`"), "{err}");
}

#[test]
fn kafka_properties_add_up_in_order_and_keep_commas() {
    let c = load(&[
        "--kafka-brokers",
        "127.0.0.1:9092",
        "--kafka-property",
        "security.protocol=SASL_PLAINTEXT",
        "--kafka-property",
        " sasl.password=a,b=c",
    ])
    .expect("load");
    let bridge = c.bridge().expect("cluster mode");
    assert_eq!(
        bridge.properties,
        [
            ("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned()),
            ("sasl.password".to_owned(), "a,b=c".to_owned()),
        ]
    );
    let shown = format!("{c:?} {bridge:?}");
    assert!(!shown.contains("a,b=c"), "a secret in Debug output: {shown}");
}

#[test]
fn malformed_kafka_properties_are_refused_without_echo() {
    for entry in ["sasl.password", "=x", " =x", ""] {
        let err = load(&["--kafka-property", "a=1", "--kafka-property", entry])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("`kafka-property`") && err.contains("entry 2"),
            "{entry:?}: {err}"
        );
        assert!(entry.is_empty() || !err.contains(entry), "{err}");
    }
}

#[test]
fn kafka_properties_from_env_split_at_commas() {
    let got = env_properties("security.protocol=SSL, ssl.ca.location=/ca.pem,,");
    let split: Vec<_> = got.iter().map(KafkaProperty::split).collect();
    assert_eq!(
        split,
        [Some(("security.protocol", "SSL")), Some(("ssl.ca.location", "/ca.pem"))]
    );
}

#[test]
fn file_kafka_properties_are_one_flag_each_before_the_command_line() {
    let dir = std::env::temp_dir().join(format!("chat-config-props-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("engine.toml");
    std::fs::write(
        &path,
        "kafka-brokers = \"b:9092\"\nkafka-property = [\"sasl.mechanism=PLAIN\", \"sasl.password=x,y\"]\n",
    )
    .expect("write");
    let path = path.to_str().unwrap_or_default();
    let c = load(&["--config", path, "--kafka-property", "sasl.mechanism=SCRAM-SHA-512"]).expect("load");
    let keys: Vec<_> = c.kafka_property.iter().filter_map(KafkaProperty::split).collect();
    assert_eq!(
        keys,
        [
            ("sasl.mechanism", "PLAIN"),
            ("sasl.password", "x,y"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
        ]
    );
}

#[test]
fn startup_traps_are_refused_naming_their_key() {
    let cases: [(&[&str], &str); 9] = [
        (&["--sockjs-heartbeat-ms", "0"], "`sockjs-heartbeat-ms`"),
        (&["--drain-secs", "18446744073709551615"], "`drain-secs`"),
        (&["--node-id", "a\"b"], "`node-id`"),
        (&["--node-id", "line\nbreak"], "`node-id`"),
        (&["--node-id", "back\\slash"], "`node-id`"),
        (&["--log", "info,engine=loud"], "`log`"),
        (&["--max-header-line-bytes", "10"], "`max-header-line-bytes`"),
        (&["--publish-burst", "0"], "`publish-burst`"),
        (&["--trusted-proxies", "10.0.0.0/33"], "trusted-proxies"),
    ];
    for (args, key) in cases {
        let err = load(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(key), "{args:?}: {err}");
    }
    assert!(load(&["--node-id", "pod-7.zone_a", "--drain-secs", "3600"]).is_ok());
}

#[test]
fn trusted_proxies_match_addresses_and_blocks() {
    let c = load(&["--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1"]).expect("load");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("an address");
    let trusted = |s| c.trusted_proxies.iter().any(|p| p.contains(ip(s)));
    assert!(trusted("10.200.3.4") && trusted("127.0.0.1") && trusted("::1"));
    assert!(trusted("::ffff:10.1.2.3"), "IPv4-mapped");
    assert!(!trusted("11.0.0.1") && !trusted("127.0.0.2") && !trusted("::2"));
    let all = Cidr::parse("0.0.0.0/0").expect("a block");
    assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("2001:db8::1")));
}

#[test]
fn bad_log_filters_are_refused() {
    let err = load(&["--log", "info,engine=loud"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("`log`"), "{err}");
    assert!(load(&["--log", "warn,engine::shard=debug"]).is_ok());
}

#[test]
fn json_logs_are_one_object_per_line() {
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let c = load(&["--log-format", "json", "--log", "debug"]).expect("load");
    assert_eq!(c.log_format, LogFormat::Json);
    let lines = Lines::default();
    let writer = lines.clone();
    tracing::subscriber::with_default(c.log_subscriber(move || writer.clone()), || {
        tracing::info!(shard = 1, node = "n1", "shard ready");
        tracing::debug!(error = "a \"quoted\"\nline", "accept failed");
    });
    let text = String::from_utf8(lines.0.lock().expect("not poisoned").clone()).expect("utf-8");
    let parsed: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(parsed.len(), 2, "{text}");
    assert_eq!(parsed[0]["level"], "INFO");
    assert_eq!(parsed[0]["fields"]["message"], "shard ready");
    assert_eq!(parsed[0]["fields"]["shard"], 1);
    assert_eq!(parsed[1]["fields"]["error"], "a \"quoted\"\nline");
    assert_eq!(load(&[]).expect("defaults").log_format, LogFormat::Text);
}

#[test]
fn auth_keys_are_loaded_at_startup() {
    assert!(
        load(&[]).expect("defaults").auth.is_none(),
        "authentication is off by default"
    );
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys/");
    let c = load(&["--auth-jwt-public-key-file", &format!("{keys}es256-test-public.pem")]).expect("load");
    assert!(c.auth.is_some());
    let err = load(&["--auth-jwt-secret-file", &format!("{keys}missing")])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("`auth-jwt-secret-file`"), "{err}");
    let err = load(&["--auth-jwt-public-key-file", &format!("{keys}es256-test-private.pem")])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("`auth-jwt-public-key-file`"), "{err}");
}

#[test]
fn allowed_origins_are_exact_or_any() {
    assert_eq!(load(&[]).expect("defaults").allowed_origins, AllowedOrigins::Any);
    let c = load(&["--allowed-origins", "https://a.example, http://localhost:3000/"]).expect("load");
    let origins = &c.allowed_origins;
    assert!(origins.allows(Some("https://a.example")));
    assert!(origins.allows(Some("HTTPS://A.example")));
    assert!(origins.allows(Some("http://localhost:3000")));
    assert!(origins.allows(None), "non-browser clients send no Origin");
    assert!(!origins.allows(Some("https://a.example.evil")));
    assert!(!origins.allows(Some("null")));
    assert!(load(&["--allowed-origins", "a.example"]).is_err());
    assert!(load(&["--allowed-origins", ","]).is_err());
    assert_eq!(
        load(&["--allowed-origins", "https://a.example,*"])
            .expect("load")
            .allowed_origins,
        AllowedOrigins::Any
    );
}

#[test]
fn file_values_sit_under_flags() {
    let dir = std::env::temp_dir().join(format!("chat-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("engine.toml");
    std::fs::write(&path, "node-id = \"from-file\"\nshards = 3\n").expect("write");
    let c = load(&["--config", path.to_str().unwrap_or_default(), "--shards", "2"]).expect("load");
    assert_eq!(c.node_id, "from-file");
    assert_eq!(c.shards, Some(2));
}
