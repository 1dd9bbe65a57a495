//! The metadata log as found on disk after any damage: opening it replays the records,
//! cuts a torn tail, or refuses with a message, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel_metadata::LocalMetadataLog;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metadata.log"), data).unwrap();
    let _ = LocalMetadataLog::open(dir.path());
});
