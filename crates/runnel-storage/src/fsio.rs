//! The file-system boundary of the storage crate: calls whose failure matters (open and
//! create, write, fsync, rename, remove, truncate) go through here, so that tests can make
//! chosen calls fail (see [`crate::failpoints`], built only with the `failpoints` feature).
//!
//! Also owns [`Dir`]: a directory held open by descriptor, so that files created through it
//! land in that directory even after it is renamed (a compaction running while its topic is
//! deleted can never write into a new directory of the same name).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[cfg(feature = "failpoints")]
use crate::failpoints::check;

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
fn check(_: Op) -> io::Result<()> {
    Ok(())
}

/// The kinds of call a failpoint can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Open,
    Write,
    Fsync,
    Rename,
    Remove,
    Truncate,
}

/// Opens `path` with `opts`.
pub(crate) fn open(path: &Path, opts: &OpenOptions) -> io::Result<File> {
    check(Op::Open)?;
    opts.open(path)
}

/// Creates (or truncates) `path` for writing.
pub(crate) fn create(path: &Path) -> io::Result<File> {
    check(Op::Open)?;
    File::create(path)
}

/// Writes all of `buf` at `pos`. An injected failure writes half of it first (a short
/// write on a full disk).
pub(crate) fn write_all_at(f: &File, buf: &[u8], pos: u64) -> io::Result<()> {
    if let Err(e) = check(Op::Write) {
        let _ = f.write_all_at(&buf[..buf.len() / 2], pos);
        return Err(e);
    }
    f.write_all_at(buf, pos)
}

/// `io::Write::write_all` through the boundary (appending writers).
pub(crate) fn write_all(w: &mut impl io::Write, buf: &[u8]) -> io::Result<()> {
    check(Op::Write)?;
    w.write_all(buf)
}

/// fsync (data and metadata).
pub(crate) fn sync_all(f: &File) -> io::Result<()> {
    check(Op::Fsync)?;
    f.sync_all()
}

/// fdatasync.
pub(crate) fn sync_data(f: &File) -> io::Result<()> {
    check(Op::Fsync)?;
    f.sync_data()
}

/// fsyncs a directory (its entries: created, renamed, removed files).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    check(Op::Fsync)?;
    File::open(dir)?.sync_all()
}

/// syncfs(2): writes back and commits every dirty page and inode of the filesystem that
/// holds `dir`, so that one call makes a whole batch of files, directory entries and
/// renames durable where an fsync each would cost a journal commit each. Linux reports
/// writeback errors through it since 5.8.
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    check(Op::Fsync)?;
    let d = File::open(dir)?;
    // SAFETY: `d` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    check(Op::Rename)?;
    std::fs::rename(from, to)
}

pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    check(Op::Remove)?;
    std::fs::remove_file(path)
}

pub(crate) fn set_len(f: &File, len: u64) -> io::Result<()> {
    check(Op::Truncate)?;
    f.set_len(len)
}

/// A directory held open by descriptor (see the module docs).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: File,
    /// Where the directory was when opened (for logs only).
    pub path: PathBuf,
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(std::ffi::OsStr::new(name).as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl Dir {
    pub fn open(path: &Path) -> io::Result<Dir> {
        Ok(Dir { fd: File::open(path)?, path: path.to_path_buf() })
    }

    /// Creates (or truncates) `name` in this directory, read-write.
    pub fn create(&self, name: &str) -> io::Result<File> {
        check(Op::Open)?;
        let c = c_name(name)?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name; the returned
        // descriptor is owned by the File.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_CREAT | libc::O_TRUNC | libc::O_RDWR | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Removes `name` from this directory.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        check(Op::Remove)?;
        let c = c_name(name)?;
        // SAFETY: as in `create`.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
