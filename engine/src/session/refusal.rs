//! How a session says no: a frame that broke a rule of STOMP or of this server, a refused
//! token or destination, or a framing error, each becomes one answer (an `ERROR` and a
//! close, or a WebSocket close code) and one count in `/metrics`. `session.rs` finds the
//! fault; this file words the answer.

use bytes::Bytes;
use proto::server;
use proto::stomp::{self, Command};
use proto::{sockjs, ws, ProtocolError};
use smallvec::SmallVec;

use super::{Env, Output, Session, Step};
use crate::auth;
use crate::metrics::ErrorKind;

impl Session {
    /// The one place a protocol error becomes an answer to the peer: a WebSocket close
    /// code for framing errors, an `ERROR` frame for STOMP ones.
    pub fn fail(&mut self, env: &Env<'_>, error: ProtocolError, receipt: Option<&[u8]>, out: &mut Output) -> Step {
        let (kind, code) = match error {
            ProtocolError::Ws(e @ ws::Error::Protocol(_)) => (ErrorKind::WsProtocol, e.close_code()),
            ProtocolError::Ws(e @ ws::Error::InvalidUtf8) => (ErrorKind::WsUtf8, e.close_code()),
            ProtocolError::Ws(e @ ws::Error::TooBig) => (ErrorKind::WsTooBig, e.close_code()),
            ProtocolError::SockJs(sockjs::Error::BadJson) => (ErrorKind::SockJs, 1002),
            ProtocolError::Stomp(e @ stomp::Error::LineTooLong) => {
                return self.refuse(env, ErrorKind::HeaderLineTooLong, e.message(), receipt, out)
            }
            ProtocolError::Stomp(e) => return self.refuse(env, ErrorKind::Stomp, e.message(), receipt, out),
            ProtocolError::Http(_) => (ErrorKind::Http, 1002),
        };
        env.stats.error(kind);
        server::encode_end(self.framing(), code, &mut out.wire);
        self.end()
    }

    /// Answers a frame refused for `refused`: `ERROR`, then close.
    pub(super) fn refuse_for(
        &mut self,
        env: &Env<'_>,
        refused: Refused,
        receipt: Option<&[u8]>,
        out: &mut Output,
    ) -> Step {
        match refused {
            Refused::Rule(rule) => self.refuse(env, rule.kind, rule.message, receipt, out),
            Refused::Auth(refusal) => self.refuse(env, ErrorKind::Auth, refusal.message(), receipt, out),
            Refused::Denied {
                kind,
                reason,
                destination,
            } => {
                let message = format!("{reason} {}", String::from_utf8_lossy(&destination));
                self.refuse(env, kind, &message, receipt, out)
            }
        }
    }

    /// Answers a frame the server will not take: `ERROR`, then close.
    pub(super) fn refuse(
        &mut self,
        env: &Env<'_>,
        kind: ErrorKind,
        message: &str,
        receipt: Option<&[u8]>,
        out: &mut Output,
    ) -> Step {
        env.stats.error(kind);
        self.send_error(message, receipt, out);
        self.goodbye(1000, "", out)
    }

    /// Queues an `ERROR` saying `message`, naming the frame's `receipt` when it had one.
    pub(super) fn send_error(&self, message: &str, receipt: Option<&[u8]>, out: &mut Output) {
        let mut headers: SmallVec<[(&str, &[u8]); 3]> = SmallVec::new();
        headers.push(("message", message.as_bytes()));
        headers.push(("content-type", b"text/plain"));
        if let Some(receipt) = receipt {
            headers.push(("receipt-id", receipt));
        }
        self.send_frame(Command::Error, &headers, message.as_bytes(), out);
    }
}

/// A rule of this server or of STOMP that a frame broke: the text is the `ERROR`'s
/// `message`, the kind what `/metrics` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProtocolRule {
    pub(super) message: &'static str,
    pub(super) kind: ErrorKind,
}

impl ProtocolRule {
    /// A STOMP rule (`chat_errors_total{kind="stomp"}`).
    pub(super) const fn stomp(message: &'static str) -> Self {
        ProtocolRule {
            message,
            kind: ErrorKind::Stomp,
        }
    }

    /// A limit of this server, counted by its own kind.
    pub(super) const fn limit(kind: ErrorKind, message: &'static str) -> Self {
        ProtocolRule { message, kind }
    }
}

impl From<stomp::Error> for ProtocolRule {
    fn from(e: stomp::Error) -> Self {
        ProtocolRule::stomp(e.message())
    }
}

/// Why a frame was refused: a protocol rule, the `CONNECT`'s token, or a destination
/// this client may not use (named in the `ERROR`).
#[derive(Debug)]
pub(super) enum Refused {
    Rule(ProtocolRule),
    Auth(auth::Refusal),
    Denied {
        kind: ErrorKind,
        reason: &'static str,
        destination: Bytes,
    },
}

impl From<ProtocolRule> for Refused {
    fn from(rule: ProtocolRule) -> Self {
        Refused::Rule(rule)
    }
}
