//! Fuzzes `sockjs::decode_message` and `sockjs::route`: no input may panic, and what a
//! message decodes to must survive `escape_into` and a second decode unchanged.
#![no_main]

use bytes::BytesMut;
use proto::sockjs::{decode_message, escape_into, route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let mut out = BytesMut::new();
    if decode_message(data, &mut scratch, &mut out).is_ok() {
        let mut json = BytesMut::from(&b"[\""[..]);
        escape_into(&out, &mut json);
        json.extend_from_slice(b"\"]");
        let mut again = BytesMut::new();
        assert_eq!(decode_message(&json, &mut scratch, &mut again), Ok(1));
        assert_eq!(again, out);
    }
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = route("/letters-chat-server", path);
        let _ = route(path, "/letters-chat-server/123/abcdefgh/websocket");
    }
});
