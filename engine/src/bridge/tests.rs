//! The bridge's configuration checks and client properties, without a broker.

use super::*;

#[test]
fn properties_reach_every_client_last_and_stay_out_of_debug() {
    let cfg = Config {
        properties: vec![
            ("security.protocol".into(), "SASL_PLAINTEXT".into()),
            ("sasl.password".into(), "s3cret".into()),
            ("linger.ms".into(), "7".into()),
        ],
        ..Config::default()
    };
    for config in [admin_config(&cfg), producer_config(&cfg, 2), consumer_config(&cfg)] {
        assert_eq!(config.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
        assert_eq!(config.get("linger.ms"), Some("7"), "the user's value wins");
    }
    let shown = format!("{cfg:?}");
    assert!(shown.contains("sasl.password") && !shown.contains("s3cret"), "{shown}");
}

#[test]
fn a_refused_property_is_reported_without_its_value() {
    let cfg = Config {
        properties: vec![("sasl.pasword".into(), "s3cret".into())],
        ..Config::default()
    };
    let error = match admin_config(&cfg).create::<rdkafka::admin::AdminClient<_>>() {
        Err(error) => kafka("create admin client")(error).to_string(),
        Ok(_) => panic!("librdkafka took an unknown property"),
    };
    assert!(error.contains("sasl.pasword") && !error.contains("s3cret"), "{error}");
}

#[test]
fn default_config_passes_the_check() {
    assert!(check(&Config::default(), 4).is_ok());
}

#[test]
fn check_names_the_bad_key() {
    let bad = |f: fn(&mut Config)| {
        let mut cfg = Config::default();
        f(&mut cfg);
        match check(&cfg, 2) {
            Err(Error::Config(reason)) => reason,
            other => panic!("expected a config error, got {other:?}"),
        }
    };
    assert!(bad(|c| c.acks = "2".into()).starts_with("acks"));
    assert!(bad(|c| c.topic = "chat room".into()).starts_with("topic"));
    assert!(bad(|c| c.topic = String::new()).starts_with("topic"));
    assert!(bad(|c| c.partitions = 0).starts_with("partitions"));
    assert!(bad(|c| c.brokers = " ".into()).starts_with("brokers"));
    assert!(bad(|c| c.buffer_messages = 0).starts_with("buffer_messages"));
    assert!(bad(|c| c.node_id = String::new()).starts_with("node_id"));
    assert!(bad(|c| c.properties = vec![(" ".into(), "x".into())]).starts_with("properties"));
    assert!(matches!(check(&Config::default(), 0), Err(Error::Config(_))));
    assert!(matches!(check(&Config::default(), 65), Err(Error::Config(_))));
}
