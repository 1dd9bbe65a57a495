//! Writes the test certificates (a CA, a server keystore for 127.0.0.1, a trusted and a
//! rogue client certificate) into the directory given as the only argument, for the
//! Python suite's SSL and SASL_SSL tests. Not a tool for production certificates.

#[path = "../tests/common/certs.rs"]
mod certs;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: test_certs DIR");
    let c = certs::make(std::path::Path::new(&dir));
    println!("{}", c.dir.display());
}
