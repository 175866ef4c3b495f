//! Parse arbitrary bytes as a binary-cache info file (`nexis_store::CacheInfo::parse`):
//! any input gives an info or an error naming a line, never a panic. An info that parses
//! prints to a text that parses back to the same info, and printing is canonical (the
//! second print equals the first). Crash inputs go to
//! `nexis-store/tests/fixtures/fuzzed-info/`, where a test replays them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexis_store::{CacheInfo, MAX_INFO_LINES};

fuzz_target!(|data: &[u8]| {
    let info = match CacheInfo::parse(data, "fuzz.info") {
        Ok(info) => info,
        Err(e) => {
            assert!(e.line <= MAX_INFO_LINES + 1, "{e}");
            assert!(e.to_string().starts_with("fuzz.info"));
            return;
        }
    };
    let text = info.to_text();
    let again = CacheInfo::parse(text.as_bytes(), "printed").expect("printed info parses");
    assert_eq!(again, info);
    assert_eq!(again.to_text(), text);
    let _ = info.to_path_info();
});
