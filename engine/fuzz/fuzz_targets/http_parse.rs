//! Feeds arbitrary bytes to `http::parse_request` and everything that takes its
//! result. Nothing may panic; a complete head must parse the same from its own bytes
//! alone and from every longer buffer; an accepted upgrade must yield a usable key.
#![no_main]

use bytes::BytesMut;
use proto::http;
use libfuzzer_sys::fuzz_target;

const MAX_HEAD_BYTES: usize = 4096;
const PROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

fuzz_target!(|data: &[u8]| {
    let result = http::parse_request(data, MAX_HEAD_BYTES);
    let (request, head_bytes) = match result {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(data.len() <= MAX_HEAD_BYTES);
            return;
        }
        Err(error) => {
            assert!(matches!(error.status(), 400 | 426 | 431));
            return;
        }
    };
    assert!(head_bytes <= data.len() && head_bytes <= MAX_HEAD_BYTES);
    let head = data.get(..head_bytes).unwrap_or_default();
    assert_eq!(
        http::parse_request(head, MAX_HEAD_BYTES),
        Ok(Some((request.clone(), head_bytes)))
    );

    let protocol = request.select_protocol(&PROTOCOLS);
    if let Some(protocol) = protocol {
        assert!(request.protocols.contains(&protocol));
    }
    let mut out = BytesMut::new();
    match request.check_upgrade() {
        Ok(key) => {
            assert!(request.wants_websocket());
            assert_eq!(key.len(), 24);
            http::write_upgrade(key, protocol, &mut out);
        }
        Err(error) => {
            let headers = [("Access-Control-Allow-Origin", request.origin.unwrap_or("*"))];
            http::write_response(error.status(), &headers, data, request.keep_alive, &mut out);
        }
    }
    assert!(out.starts_with(b"HTTP/1.1 "));
});
