//! Access control: JWT verification for `CONNECT` and the channel permissions of its
//! `chat` claim. In: the token a client sent and the wall-clock time; out: a [`Grant`]
//! (who the client is, until when, where it may subscribe and publish) or a [`Refusal`]
//! whose text goes into the `ERROR`. Signatures are checked by `jsonwebtoken`; `exp` is
//! checked here against the time the caller passes, so the session stays sans-IO. Built
//! once at startup from `--auth-jwt-secret-file` (HS256) or `--auth-jwt-public-key-file`
//! (RS256 or ES256, PEM); the session verifies once per `CONNECT` and then only matches
//! the compiled [`Patterns`], which allocates nothing.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use smallvec::SmallVec;

/// Checks tokens with one key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

/// What a verified token allows.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The `sub` claim as a JSON string (quoted, escaped): the `sender` of every message
    /// this client publishes.
    pub sender_json: Bytes,
    /// The `exp` claim.
    pub expires: SystemTime,
    /// Where the client may subscribe; `None`: everywhere.
    pub subscribe: Option<Patterns>,
    /// Where the client may publish; `None`: everywhere.
    pub publish: Option<Patterns>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header and no `passcode`.
    Missing,
    /// A token that does not parse, is signed with another key or algorithm, or lacks
    /// `sub` or `exp`.
    Invalid,
    /// A token past its `exp`.
    Expired,
}

/// A list of channel patterns, `*` matching any run of characters (`/` included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns(SmallVec<[Pattern; 2]>);

/// One pattern, cut at its `*`s: the pieces between them, with a flag for each end
/// saying whether a `*` stands there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    pieces: SmallVec<[Box<[u8]>; 2]>,
    open_start: bool,
    open_end: bool,
}

/// A key file that could not be used (the text names the problem, never the key).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl Verifier {
    /// A verifier of HS256 tokens signed with the secret in `path` (its bytes, without
    /// the trailing newline an editor leaves).
    ///
    /// # Errors
    /// An unreadable or empty file.
    pub fn from_secret_file(path: &Path) -> Result<Self, KeyError> {
        let text = read(path)?;
        let secret = text.trim_ascii_end();
        if secret.is_empty() {
            return Err(KeyError(format!("{} is empty", path.display())));
        }
        Ok(Self::new(DecodingKey::from_secret(secret), &[Algorithm::HS256]))
    }

    /// A verifier of RS256 or ES256 tokens, from the PEM public key in `path` (an RSA
    /// key allows RS256, a P-256 key ES256).
    ///
    /// # Errors
    /// An unreadable file or one without an RSA or EC public key.
    pub fn from_public_key_file(path: &Path) -> Result<Self, KeyError> {
        let pem = read(path)?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self::new(key, &[Algorithm::RS256]));
        }
        match DecodingKey::from_ec_pem(&pem) {
            Ok(key) => Ok(Self::new(key, &[Algorithm::ES256])),
            Err(_) => Err(KeyError(format!(
                "{}: not a PEM RSA or EC (P-256) public key",
                path.display()
            ))),
        }
    }

    /// A verifier with `key` for `algorithms`.
    pub fn new(key: DecodingKey, algorithms: &[Algorithm]) -> Self {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `exp` is checked by `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        Verifier { key, validation }
    }

    /// Checks `token` at wall-clock time `now`.
    ///
    /// # Errors
    /// A [`Refusal`] naming why the token is not accepted.
    pub fn verify(&self, token: &[u8], now: SystemTime) -> Result<Grant, Refusal> {
        let token = std::str::from_utf8(token).map_err(|_| Refusal::Invalid)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| Refusal::Invalid)?
            .claims;
        let expires = UNIX_EPOCH + Duration::from_secs(claims.exp);
        if expires <= now {
            return Err(Refusal::Expired);
        }
        if claims.sub.is_empty() {
            return Err(Refusal::Invalid);
        }
        let mut sender_json = BytesMut::with_capacity(claims.sub.len() + 2);
        // A `String` always serialises.
        serde_json::to_writer((&mut sender_json).writer(), &claims.sub).map_err(|_| Refusal::Invalid)?;
        let (subscribe, publish) = match claims.chat {
            None => (None, None),
            // Within a `chat` claim, a list left out allows nothing.
            Some(chat) => (
                Some(Patterns::compile(chat.subscribe.iter().flatten())),
                Some(Patterns::compile(chat.publish.iter().flatten())),
            ),
        };
        Ok(Grant {
            sender_json: sender_json.freeze(),
            expires,
            subscribe,
            publish,
        })
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Refusal {
    /// The text of the `ERROR`'s `message`.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "authentication required: send Authorization:Bearer <token> in CONNECT",
            Refusal::Invalid => "invalid token",
            Refusal::Expired => "token expired",
        }
    }
}

impl Grant {
    /// Whether the client may subscribe to `destination`.
    pub fn may_subscribe(&self, destination: &[u8]) -> bool {
        self.subscribe.as_ref().is_none_or(|p| p.allow(destination))
    }

    /// Whether the client may publish to `destination`.
    pub fn may_publish(&self, destination: &[u8]) -> bool {
        self.publish.as_ref().is_none_or(|p| p.allow(destination))
    }
}

impl Patterns {
    /// Compiles `patterns`; empty ones are skipped.
    pub fn compile<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Patterns(
            patterns
                .into_iter()
                .filter(|p| !p.as_ref().is_empty())
                .map(|p| Pattern::compile(p.as_ref().as_bytes()))
                .collect(),
        )
    }

    /// Whether any pattern matches `destination`: for a chat destination
    /// (`/sub/chat/{channel}`) the patterns match the channel name, for any other the
    /// whole destination.
    pub fn allow(&self, destination: &[u8]) -> bool {
        let name = crate::message::channel_of(destination).unwrap_or(destination);
        self.0.iter().any(|p| p.matches(name))
    }
}

impl Pattern {
    fn compile(text: &[u8]) -> Self {
        Pattern {
            pieces: text
                .split(|&b| b == b'*')
                .filter(|piece| !piece.is_empty())
                .map(Box::from)
                .collect(),
            open_start: text.first() == Some(&b'*'),
            open_end: text.last() == Some(&b'*'),
        }
    }

    /// Glob matching without backtracking: the first piece is anchored at the start
    /// unless a `*` leads, the last at the end unless a `*` trails, and each piece in
    /// between is taken at its first occurrence (the earliest match leaves the most room
    /// for the rest, so that is never wrong).
    fn matches(&self, mut name: &[u8]) -> bool {
        let mut pieces = &self.pieces[..];
        if pieces.is_empty() {
            // `*` (or `**`) matches everything; an empty pattern nothing.
            return self.open_start || name.is_empty();
        }
        if !self.open_start {
            let Some(rest) = name.strip_prefix(&*pieces[0]) else {
                return false;
            };
            name = rest;
            pieces = &pieces[1..];
            if pieces.is_empty() {
                return self.open_end || name.is_empty();
            }
        }
        let Some((last, middle)) = pieces.split_last() else {
            return true;
        };
        for piece in middle {
            match memchr::memmem::find(name, piece) {
                Some(at) => name = &name[at + piece.len()..],
                None => return false,
            }
        }
        if self.open_end {
            memchr::memmem::find(name, last).is_some()
        } else {
            name.ends_with(last)
        }
    }
}

/// The claims the engine reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    chat: Option<ChatClaim>,
}

/// `{"subscribe": [patterns], "publish": [patterns]}`.
#[derive(Deserialize)]
struct ChatClaim {
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    publish: Option<Vec<String>>,
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
