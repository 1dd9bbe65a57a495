//! The bytes under a connection: a plaintext TCP stream, or TLS over it. Reading is the
//! same for both; writing a response differs only in its record sections: plaintext
//! sends them from the segment files with `sendfile(2)` (zero copy; sections of a few KiB
//! are copied in instead, so that the response is one `writev`), TLS reads them into a
//! buffer and encrypts them (the kernel cannot encrypt what it splices).

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};

use runnel_protocol::splice::FramePart;
use runnel_storage::ReadSlice;
use tokio::io::{AsyncRead, AsyncWriteExt, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::auth::tls::TlsContext;
use crate::auth::KafkaPrincipal;

/// The read side of a connection.
pub type Reader = Box<dyn AsyncRead + Unpin + Send>;

/// The write side of a connection.
pub enum Writer {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// Chunk in which TLS connections copy record sections out of segment files.
const TLS_COPY_CHUNK: usize = 256 * 1024;

/// Record sections up to this size (a response's together) are copied into a plaintext
/// response rather than sent with `sendfile`: for small sections the copy from the page
/// cache costs less than the system calls and TCP segments it saves.
pub const COPY_MAX: usize = 64 * 1024;

/// Pieces handed to one `writev`.
const MAX_IOV: usize = 64;

/// A plaintext connection's two halves.
pub fn plain(stream: TcpStream) -> (Reader, Writer) {
    let (rd, wr) = stream.into_split();
    (Box::new(rd), Writer::Plain(wr))
}

/// Runs the TLS handshake (bounded by `timeout`). Returns the halves, and the principal
/// named by the client's certificate if it sent one (it was verified by then).
pub async fn tls(
    stream: TcpStream,
    ctx: &Arc<TlsContext>,
    timeout: Duration,
) -> Result<(Reader, Writer, Option<KafkaPrincipal>), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(ctx.server_config());
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
        Err(_) => return Err("TLS handshake timed out".into()),
    };
    let principal = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(cert) => {
            let dn = crate::auth::tls::subject_dn(cert).ok_or("client certificate subject does not parse")?;
            let name = ctx
                .rules
                .map(&dn)
                .ok_or_else(|| format!("no ssl.principal.mapping.rules rule matches the client certificate subject {dn:?}"))?;
            Some(KafkaPrincipal::user(name))
        }
    };
    let (rd, wr) = tokio::io::split(tls);
    Ok((Box::new(rd), Writer::Tls(wr), principal))
}

impl Writer {
    /// Writes one response: encoded pieces as they are, record sections from the files.
    /// On plaintext, small record sections (up to [`COPY_MAX`] in all) are read into the
    /// response, which then goes out in one `writev`; larger ones are sent with `sendfile`
    /// between vectored writes of the pieces around them.
    pub async fn write_parts(&mut self, parts: Vec<FramePart<ReadSlice>>) -> std::io::Result<()> {
        let wr = match self {
            Writer::Plain(wr) => wr,
            Writer::Tls(wr) => return write_tls(wr, parts).await,
        };
        let spliced: usize = parts.iter().map(|p| if let FramePart::Splice(s) = p { s.len() } else { 0 }).sum();
        let mut run: Vec<Bytes> = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                FramePart::Bytes(b) => run.push(b),
                FramePart::Splice(slice) if spliced <= COPY_MAX => run.push(read_slice(&slice)?),
                FramePart::Splice(slice) => {
                    write_all_vectored(wr, &mut run).await?;
                    for s in &slice.slices {
                        send_file(wr.as_ref(), s).await?;
                    }
                }
            }
        }
        write_all_vectored(wr, &mut run).await
    }

    /// Flushes and closes the write side.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Writer::Plain(wr) => wr.shutdown().await,
            Writer::Tls(wr) => wr.shutdown().await,
        }
    }
}

/// Writes `pieces` with as few `writev` calls as the socket takes, and empties it.
async fn write_all_vectored(wr: &mut OwnedWriteHalf, pieces: &mut Vec<Bytes>) -> std::io::Result<()> {
    let mut first = 0;
    loop {
        while pieces.get(first).is_some_and(|b| b.is_empty()) {
            first += 1;
        }
        if first == pieces.len() {
            pieces.clear();
            return Ok(());
        }
        let iov: Vec<IoSlice<'_>> = pieces[first..].iter().take(MAX_IOV).map(|b| IoSlice::new(b)).collect();
        let mut n = wr.write_vectored(&iov).await?;
        drop(iov);
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let len = pieces[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                pieces[first].advance(n);
                n = 0;
            }
        }
    }
}

/// A TLS response: every piece through the TLS stream (record sections copied from the files).
async fn write_tls(wr: &mut WriteHalf<TlsStream<TcpStream>>, parts: Vec<FramePart<ReadSlice>>) -> std::io::Result<()> {
    for part in parts {
        match part {
            FramePart::Bytes(b) => wr.write_all(&b).await?,
            FramePart::Splice(slice) => {
                for s in &slice.slices {
                    copy_file(wr, s).await?;
                }
            }
        }
    }
    Ok(())
}

/// A small record section read from its files (page cache reads, like the batch headers
/// the fetch read before). A file shorter than the range is an error, as for `sendfile`.
fn read_slice(slice: &ReadSlice) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; slice.len()];
    let mut at = 0;
    for s in &slice.slices {
        s.file.read_exact_at(&mut buf[at..at + s.len], s.position)?;
        at += s.len;
    }
    Ok(Bytes::from(buf))
}

/// Copies one file range into the TLS stream, a chunk at a time. The reads come from the
/// page cache, as `sendfile`'s do; a file shorter than the range is an error.
async fn copy_file(wr: &mut WriteHalf<TlsStream<TcpStream>>, slice: &runnel_storage::FileSlice) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; slice.len.min(TLS_COPY_CHUNK)];
    let mut pos = slice.position;
    let mut left = slice.len;
    while left > 0 {
        let n = left.min(buf.len());
        slice.file.read_exact_at(&mut buf[..n], pos)?;
        wr.write_all(&buf[..n]).await?;
        pos += n as u64;
        left -= n;
    }
    wr.flush().await
}

/// `sendfile(2)` of one file range to the socket, waiting for writability as needed.
/// A file shorter than the range (truncated since it was read) is an error: the frame
/// would be short, so the connection must close.
async fn send_file(stream: &TcpStream, slice: &runnel_storage::FileSlice) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut offset = slice.position as libc::off_t;
    let mut left = slice.len;
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call (the socket is
            // borrowed, the file is held by its Arc); `offset` is a valid pointer.
            let n = unsafe { libc::sendfile(stream.as_raw_fd(), slice.file.as_raw_fd(), &mut offset, left) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment file shorter than the range to send")),
            Ok(n) => left -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
