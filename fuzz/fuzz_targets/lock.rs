//! Parse arbitrary UTF-8 as a lock file (`nexis_fetch::Lock::parse`): any input gives a
//! lock or an error naming the file, a line and a column inside the text, never a panic.
//! A lock that parses prints to a text that parses back to the same lock, and printing
//! is canonical (the second print equals the first). Crash inputs go to
//! `nexis-fetch/tests/fixtures/fuzzed-lock/`, where a test replays them.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nexis_fetch::Lock;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lock = match Lock::parse(text, Path::new("nexis.lock")) {
        Ok(lock) => lock,
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1, "{e}");
            assert!(e.line <= text.lines().count().max(1) + 1, "{e}");
            assert!(e.to_string().starts_with("nexis.lock:"), "{e}");
            return;
        }
    };
    let printed = lock.to_text();
    let again = Lock::parse(&printed, Path::new("printed"))
        .unwrap_or_else(|e| panic!("the printed lock does not parse: {e}\n{printed}"));
    assert_eq!(again, lock, "{printed}");
    assert_eq!(again.to_text(), printed);
    for input in lock.inputs.values() {
        let _ = input.source.pin();
    }
    assert!(lock.changes_from(&again).is_empty());
});
