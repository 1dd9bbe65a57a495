//! The broker starts on an ephemeral port, answers a raw ApiVersions, and stops cleanly
//! on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

#[test]
fn starts_answers_and_stops_cleanly() {
    let mut b = common::Broker::start(&[]);
    let mut s = TcpStream::connect(&b.addr).unwrap();
    // ApiVersions v0: key 18, version 0, correlation id 42, null client id.
    let req = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 42, 0xff, 0xff];
    s.write_all(&req).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body[..4], &42i32.to_be_bytes(), "correlation id echoed");
    assert_eq!(&body[4..6], &[0, 0], "no error");
    assert!(b.data_dir.join("meta.properties").exists());
    assert!(b.stop(), "clean exit on SIGTERM");
}
