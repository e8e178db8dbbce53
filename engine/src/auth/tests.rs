//! Tokens signed here with the test keys of `tests/keys/`, checked at a fixed time.

use std::path::PathBuf;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const SECRET: &[u8] = b"test secret, not for production";
/// 2027-01-15T08:00:00Z.
const NOW: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(SECRET)).expect("signs")
}

fn hs256_verifier() -> Verifier {
    Verifier::new(DecodingKey::from_secret(SECRET), &[Algorithm::HS256])
}

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys").join(name)
}

#[test]
fn a_good_token_grants_its_subject_and_expiry() {
    let token = hs256(&json!({"sub": "alice \"A\"", "exp": NOW + 60}));
    let grant = hs256_verifier().verify(token.as_bytes(), at(NOW)).expect("valid");
    assert_eq!(&grant.sender_json[..], br#""alice \"A\"""#);
    assert_eq!(grant.expires, at(NOW + 60));
    assert!(grant.may_subscribe(b"/sub/chat/anything") && grant.may_publish(b"/sub/chat/x"));
}

#[test]
fn bad_tokens_are_refused_with_their_reason() {
    let v = hs256_verifier();
    let expired = hs256(&json!({"sub": "a", "exp": NOW}));
    assert_eq!(v.verify(expired.as_bytes(), at(NOW)).err(), Some(Refusal::Expired));
    let other_key = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": "a", "exp": NOW + 60}),
        &EncodingKey::from_secret(b"another secret"),
    )
    .expect("signs");
    let no_sub = hs256(&json!({"exp": NOW + 60}));
    let no_exp = hs256(&json!({"sub": "a"}));
    let empty_sub = hs256(&json!({"sub": "", "exp": NOW + 60}));
    for bad in [&other_key[..], &no_sub, &no_exp, &empty_sub, "x.y.z", "", "\u{ff}"] {
        assert_eq!(v.verify(bad.as_bytes(), at(NOW)).err(), Some(Refusal::Invalid), "{bad}");
    }
    let tampered = {
        let good = hs256(&json!({"sub": "a", "exp": NOW + 60}));
        let forged = hs256(&json!({"sub": "root", "exp": NOW + 60}));
        let (head, rest) = good.split_once('.').expect("three parts");
        let sig = rest.rsplit_once('.').expect("three parts").1;
        let body = forged.split('.').nth(1).expect("three parts");
        format!("{head}.{body}.{sig}")
    };
    assert_eq!(v.verify(tampered.as_bytes(), at(NOW)).err(), Some(Refusal::Invalid));
}

#[test]
fn the_algorithm_is_the_keys_not_the_tokens() {
    // An HS256 token "signed" with the public key's bytes must not pass an RS256 verifier.
    let public = std::fs::read(key_file("rs256-test-public.pem")).expect("fixture");
    let v = Verifier::from_public_key_file(&key_file("rs256-test-public.pem")).expect("rsa key");
    let confused = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": "a", "exp": NOW + 60}),
        &EncodingKey::from_secret(&public),
    )
    .expect("signs");
    assert_eq!(v.verify(confused.as_bytes(), at(NOW)).err(), Some(Refusal::Invalid));
}

#[test]
fn rs256_and_es256_tokens_verify_with_pem_public_keys() {
    for (alg, private, public) in [
        (Algorithm::RS256, "rs256-test-private.pem", "rs256-test-public.pem"),
        (Algorithm::ES256, "es256-test-private.pem", "es256-test-public.pem"),
    ] {
        let pem = std::fs::read(key_file(private)).expect("fixture");
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        }
        .expect("private key");
        let token =
            jsonwebtoken::encode(&Header::new(alg), &json!({"sub": "bob", "exp": NOW + 60}), &key).expect("signs");
        let v = Verifier::from_public_key_file(&key_file(public)).expect("public key");
        let grant = v.verify(token.as_bytes(), at(NOW)).expect("valid");
        assert_eq!(&grant.sender_json[..], br#""bob""#, "{alg:?}");
        let hs = hs256(&json!({"sub": "bob", "exp": NOW + 60}));
        assert_eq!(
            v.verify(hs.as_bytes(), at(NOW)).err(),
            Some(Refusal::Invalid),
            "{alg:?}"
        );
    }
}

#[test]
fn key_files_that_cannot_serve_are_refused() {
    assert!(Verifier::from_public_key_file(&key_file("missing.pem")).is_err());
    assert!(Verifier::from_public_key_file(&key_file("es256-test-private.pem")).is_err());
    let dir = std::env::temp_dir().join(format!("chat-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").expect("write");
    assert!(Verifier::from_secret_file(&empty).is_err());
    let secret = dir.join("secret");
    std::fs::write(&secret, [SECRET, b"\n"].concat()).expect("write");
    let token = hs256(&json!({"sub": "a", "exp": NOW + 60}));
    let v = Verifier::from_secret_file(&secret).expect("secret");
    assert!(
        v.verify(token.as_bytes(), at(NOW)).is_ok(),
        "the trailing newline is not part of the secret"
    );
}

#[test]
fn the_chat_claim_limits_channels() {
    let token = hs256(&json!({
        "sub": "carol",
        "exp": NOW + 60,
        "chat": {"subscribe": ["global", "team-*"], "publish": ["team-red"]}
    }));
    let grant = hs256_verifier().verify(token.as_bytes(), at(NOW)).expect("valid");
    assert!(grant.may_subscribe(b"/sub/chat/global"));
    assert!(grant.may_subscribe(b"/sub/chat/team-blue"));
    assert!(!grant.may_subscribe(b"/sub/chat/globalx"));
    assert!(!grant.may_subscribe(b"/sub/chat/staff"));
    assert!(grant.may_publish(b"/sub/chat/team-red"));
    assert!(!grant.may_publish(b"/sub/chat/global"));

    let subscribe_only = hs256(&json!({"sub": "d", "exp": NOW + 60, "chat": {"subscribe": ["*"]}}));
    let grant = hs256_verifier()
        .verify(subscribe_only.as_bytes(), at(NOW))
        .expect("valid");
    assert!(grant.may_subscribe(b"/sub/chat/any") && grant.may_subscribe(b"/sub/notice"));
    assert!(
        !grant.may_publish(b"/sub/chat/any"),
        "a list left out of the claim allows nothing"
    );
}

#[test]
fn patterns_match_like_globs() {
    let cases: &[(&str, &str, bool)] = &[
        ("*", "", true),
        ("*", "anything/at all", true),
        ("", "", true),
        ("global", "global", true),
        ("global", "global2", false),
        ("team-*", "team-", true),
        ("team-*", "team-red", true),
        ("team-*", "teams", false),
        ("*-red", "team-red", true),
        ("*-red", "team-redx", false),
        ("a*b*c", "abc", true),
        ("a*b*c", "a-b-b-c", true),
        ("a*b*c", "acb", false),
        ("a*a", "a", false),
        ("a*a", "aa", true),
        ("ab*b", "ab", false),
        ("*b*", "abc", true),
        ("*b*", "ac", false),
        ("x**y", "xy", true),
        ("**", "q", true),
        ("/sub/notice", "/sub/notice", true),
    ];
    for &(pattern, name, expected) in cases {
        let p = Pattern::compile(pattern.as_bytes());
        assert_eq!(p.matches(name.as_bytes()), expected, "{pattern:?} against {name:?}");
    }
    let patterns = Patterns::compile(["room-*", "/sub/notice"]);
    assert!(patterns.allow(b"/sub/chat/room-1"));
    assert!(patterns.allow(b"/sub/notice"));
    assert!(!patterns.allow(b"/sub/chat/lobby"));
    assert!(!Patterns::default().allow(b"/sub/chat/lobby"));
}
