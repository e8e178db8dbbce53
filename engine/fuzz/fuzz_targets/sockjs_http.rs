//! Fuzzes what SockJS's HTTP transports read from clients: `http::decode_chunked` (Node's
//! `xhr_send` bodies) and `sockjs::http::decode_send`. No input may panic; a chunked body
//! decodes the same whatever is appended after it; an accepted `xhr_send` body decodes
//! as `decode_message` does, and a refused one appends nothing.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto::http::decode_chunked;
use proto::sockjs::decode_message;
use proto::sockjs::http::decode_send;

fuzz_target!(|data: &[u8]| {
    let mut body = BytesMut::new();
    if let Ok(Some(n)) = decode_chunked(data, 1 << 16, &mut body) {
        assert!(n <= data.len());
        let mut longer = data[..n].to_vec();
        longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let mut again = BytesMut::new();
        assert_eq!(decode_chunked(&longer, 1 << 16, &mut again), Ok(Some(n)));
        assert_eq!(again, body);
    }
    let mut scratch = Vec::new();
    let mut out = BytesMut::from(&b"kept"[..]);
    match decode_send(data, &mut scratch, &mut out) {
        Ok(strings) => {
            let mut expected = BytesMut::from(&b"kept"[..]);
            assert_eq!(decode_message(data.trim_ascii(), &mut scratch, &mut expected), Ok(strings));
            assert_eq!(out, expected);
        }
        Err(_) => assert_eq!(&out[..], b"kept"),
    }
});
