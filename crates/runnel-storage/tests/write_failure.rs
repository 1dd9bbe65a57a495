//! A failed write (here EFBIG from RLIMIT_FSIZE, standing in for ENOSPC) leaves nothing
//! partial visible, and appends work again once space is back. Its own test binary,
//! with a single test, because the file-size limit is process-wide.

mod common;

use common::*;
use runnel_storage::{LogConfig, PartitionLog};

fn set_file_size_limit(limit: libc::rlim_t) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid, owned struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut rl), 0);
        rl.rlim_cur = limit.min(rl.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rl), 0);
    }
}

#[test]
fn failed_write_is_rolled_back_and_later_appends_succeed() {
    // SAFETY: ignoring SIGXFSZ makes over-limit writes fail with EFBIG instead of killing us.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let mut all = Vec::new();
    for _ in 0..3 {
        let mut b = batch(2, 100);
        log.append(&mut b).unwrap();
        all.extend(b);
    }
    let size = log.size_bytes();
    set_file_size_limit(size + 50);
    let mut big = batch(3, 200);
    let err = log.append(&mut big);
    set_file_size_limit(libc::RLIM_INFINITY);
    assert!(err.is_err(), "write past the limit must fail");
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(
        std::fs::metadata(dir.path().join("00000000000000000000.log"))
            .unwrap()
            .len(),
        size
    );
    assert_eq!(read_all(&log, 0), all);

    let mut b = batch(1, 10);
    assert_eq!(log.append(&mut b).unwrap().base_offset, 6);
    all.extend(b);
    drop(log);
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(read_all(&log, 0), all);
    assert_eq!(log.log_end_offset(), 7);
}
