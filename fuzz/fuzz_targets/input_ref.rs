//! Parse arbitrary UTF-8 as an input reference (`nexis_fetch::InputRef`): any input gives
//! a reference or an error that quotes it and points inside it, never a panic. A
//! reference that parses prints to a string that parses back to the same reference, and
//! printing is canonical (the second print equals the first). Crash inputs go to
//! `nexis-fetch/tests/fixtures/fuzzed-ref/`, where a test replays them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nexis_fetch::InputRef;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = match text.parse::<InputRef>() {
        Ok(input) => input,
        Err(e) => {
            assert_eq!(e.input(), text);
            if let Some(offset) = e.offset() {
                assert!(text.is_char_boundary(offset), "{e}");
                assert!(offset <= text.len(), "{e}");
            }
            assert!(e.to_string().starts_with("input `"));
            return;
        }
    };
    let printed = input.to_string();
    let again = printed
        .parse::<InputRef>()
        .unwrap_or_else(|e| panic!("`{text}` printed as `{printed}`, which does not parse: {e}"));
    assert_eq!(again, input, "`{text}` printed as `{printed}`");
    assert_eq!(again.to_string(), printed);
    let _ = input.hash();
    if let InputRef::Url(u) = &input {
        let _ = u.kind();
        let _ = u.url.file_path();
    }
});
