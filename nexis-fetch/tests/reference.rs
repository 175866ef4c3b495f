//! Input references: round trips on generated references (proptest) and the inputs the
//! fuzzer found (`tests/fixtures/fuzzed-ref/`).

mod common {
    pub(crate) mod files;
}

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use common::files::replay_fuzzed;
use nexis_fetch::{
    ArchiveKind, GitTransport, Hash, HashAlgo, InputRef, RefName, UrlKind, UrlScheme,
};
use proptest::prelude::*;

/// Parse, print, parse again: the same value, and the print is a fixed point.
fn round_trip(input: &InputRef) -> String {
    let printed = input.to_string();
    let again: InputRef = printed
        .parse()
        .unwrap_or_else(|e| panic!("printed form does not parse: {e}"));
    assert_eq!(&again, input, "{printed}");
    assert_eq!(again.to_string(), printed);
    printed
}

/// Percent-encode every byte of `s` that is not an unreserved character, and, when
/// `all`, every byte.
fn encode(s: &str, all: bool) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if !all && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

fn host() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-zA-Z0-9][a-zA-Z0-9._-]{0,12}".prop_map(|h| (h.clone(), h.to_ascii_lowercase())),
        any::<[u16; 8]>().prop_map(|s| {
            let addr = std::net::Ipv6Addr::from(s);
            let written = s
                .iter()
                .map(|x| format!("{x:x}"))
                .collect::<Vec<_>>()
                .join(":");
            (format!("[{written}]"), format!("[{addr}]"))
        }),
    ]
}

/// A path segment: raw characters and percent-encoded bytes, never `.`, `..` or NUL.
fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => "[A-Za-z0-9_~!$'()*+,;=:@-]".prop_map(String::from),
            1 => (1u8..=255).prop_map(|b| format!("%{b:02X}")),
            1 => Just(".".to_owned()),
        ],
        1..6,
    )
    .prop_map(|parts| parts.concat())
    .prop_filter("dot segment", |s| s != "." && s != "..")
    .prop_filter("encoded dot segment", |s| {
        let lower = s.to_ascii_lowercase();
        !matches!(lower.as_str(), "%2e" | "%2e%2e" | ".%2e" | "%2e.")
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..4).prop_map(|s| format!("/{}", s.join("/")))
}

fn hash() -> impl Strategy<Value = Hash> {
    (
        prop_oneof![Just(HashAlgo::Sha256), Just(HashAlgo::Blake3)],
        any::<[u8; 32]>(),
    )
        .prop_map(|(algo, digest)| Hash { algo, digest })
}

/// A hash as written: SRI or hexadecimal, maybe percent-encoded.
fn written_hash(h: Hash, hex: bool, all: bool) -> String {
    let text = if hex {
        format!("{}:{}", h.algo, h.to_hex())
    } else {
        h.to_string()
    };
    if all { encode(&text, true) } else { text }
}

fn ref_name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_#&+=%é\"-][a-zA-Z0-9_.#&+=%é\"-]{0,5}", 1..4)
        .prop_map(|parts| parts.join("/"))
        .prop_filter("valid ref name", |s| RefName::new(s).is_ok())
}

#[derive(Debug, Clone)]
struct GitCase {
    transport: GitTransport,
    user: Option<String>,
    host: (String, String),
    port: Option<u16>,
    path: String,
    git_ref: Option<String>,
    rev: Option<[u8; 20]>,
    submodules: Option<bool>,
    shallow: Option<bool>,
    hash: Option<(Hash, bool)>,
    encode_all: bool,
}

prop_compose! {
    fn git_case()(
        transport in prop_oneof![
            Just(GitTransport::Https),
            Just(GitTransport::Http),
            Just(GitTransport::Ssh),
            Just(GitTransport::File)
        ],
        user in prop::option::of("[a-z][a-z0-9._-]{0,6}"),
        host in host(),
        port in prop::option::of(1u16..),
        path in path(),
        git_ref in prop::option::of(ref_name()),
        rev in prop::option::of(any::<[u8; 20]>()),
        submodules in prop::option::of(any::<bool>()),
        shallow in prop::option::of(any::<bool>()),
        hash in prop::option::of((hash(), any::<bool>())),
        encode_all in any::<bool>(),
    ) -> GitCase {
        GitCase { transport, user, host, port, path, git_ref, rev, submodules, shallow, hash, encode_all }
    }
}

fn rev_hex(rev: &[u8; 20]) -> String {
    let mut out = String::new();
    for b in rev {
        write!(out, "{b:02x}").unwrap();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn git_references_round_trip(case in git_case(), order in Just((0..5).collect::<Vec<usize>>()).prop_shuffle()) {
        let scheme = match case.transport {
            GitTransport::Https => "https",
            GitTransport::Http => "http",
            GitTransport::Ssh => "ssh",
            GitTransport::File => "file",
        };
        let is_file = case.transport == GitTransport::File;
        let user = case.user.as_ref().filter(|_| case.transport == GitTransport::Ssh);
        let mut text = format!("git+{scheme}://");
        if !is_file {
            if let Some(u) = user {
                write!(text, "{u}@").unwrap();
            }
            text.push_str(&case.host.0);
            if let Some(p) = case.port {
                write!(text, ":{p}").unwrap();
            }
        }
        text.push_str(&case.path);
        let mut params = vec![None; 5];
        if let Some(r) = &case.git_ref {
            params[0] = Some(format!("ref={}", encode(r, case.encode_all)));
        }
        if let Some(rev) = &case.rev {
            params[1] = Some(format!("rev={}", rev_hex(rev)));
        }
        if let Some(s) = case.submodules {
            params[2] = Some(format!("submodules={}", u8::from(s)));
        }
        if let Some(s) = case.shallow {
            params[3] = Some(format!("shallow={}", u8::from(s)));
        }
        if let Some((h, hex)) = case.hash {
            params[4] = Some(format!("hash={}", written_hash(h, hex, case.encode_all)));
        }
        let query: Vec<String> = order.iter().filter_map(|&i| params[i].clone()).collect();
        if !query.is_empty() {
            write!(text, "?{}", query.join("&")).unwrap();
        }

        let input: InputRef = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let InputRef::Git(g) = &input else { panic!("{text}: not git") };
        prop_assert_eq!(g.url.transport(), case.transport);
        prop_assert_eq!(g.url.path(), case.path.as_str());
        if is_file {
            prop_assert_eq!(g.url.host(), None);
        } else {
            prop_assert_eq!(g.url.host(), Some(case.host.1.as_str()));
            prop_assert_eq!(g.url.port(), case.port);
            prop_assert_eq!(g.url.user(), user.map(String::as_str));
        }
        prop_assert_eq!(g.git_ref.as_ref().map(RefName::as_str), case.git_ref.as_deref());
        prop_assert_eq!(g.rev.map(|r| r.0), case.rev);
        prop_assert_eq!(g.submodules, case.submodules.unwrap_or(false));
        prop_assert_eq!(g.shallow, case.shallow.unwrap_or(true));
        prop_assert_eq!(g.hash, case.hash.map(|(h, _)| h));

        let printed = round_trip(&input);
        // Keys in the fixed order, defaults left out.
        let keys: Vec<&str> = printed
            .split_once('?')
            .map(|(_, q)| q.split('&').map(|p| p.split('=').next().unwrap()).collect())
            .unwrap_or_default();
        let order_of = |k: &str| ["ref", "rev", "submodules", "shallow", "hash"].iter().position(|x| *x == k).unwrap();
        prop_assert!(keys.windows(2).all(|w| order_of(w[0]) < order_of(w[1])), "{}", printed);
        prop_assert!(!printed.contains("submodules=0") && !printed.contains("shallow=1"));
    }

    #[test]
    fn url_references_round_trip(
        scheme in prop_oneof![Just(UrlScheme::Https), Just(UrlScheme::Http), Just(UrlScheme::File)],
        host in host(),
        port in prop::option::of(1u16..),
        dir in path(),
        stem in "[a-z0-9_-]{1,8}",
        suffix in prop_oneof![
            Just(".tar.gz"), Just(".tgz"), Just(".tar.xz"), Just(".TXZ"), Just(".tar.zst"),
            Just(".tzst"), Just(".tar"), Just(".zip"), Just(".patch"), Just(""),
        ],
        foreign in prop::collection::vec("[a-gi-z][a-z0-9]{0,4}(=[a-z0-9%/?:@-]{0,6})?", 0..4)
            .prop_filter("valid percent-encoding", |v| v.iter().all(|p| valid_percent(p))),
        hash in prop::option::of((hash(), any::<bool>(), any::<bool>())),
        hash_at in 0usize..5,
    ) {
        let mut text = format!("{}://", scheme.name());
        if scheme != UrlScheme::File {
            text.push_str(&host.0);
            if let Some(p) = port {
                write!(text, ":{p}").unwrap();
            }
        }
        let path = format!("{dir}/{stem}{suffix}");
        text.push_str(&path);
        let mut params = foreign.clone();
        if let Some((h, hex, all)) = hash {
            params.insert(hash_at.min(params.len()), format!("hash={}", written_hash(h, hex, all)));
        }
        if !params.is_empty() {
            write!(text, "?{}", params.join("&")).unwrap();
        }

        let input: InputRef = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let InputRef::Url(u) = &input else { panic!("{text}: not a URL reference") };
        prop_assert_eq!(u.url.scheme(), scheme);
        prop_assert_eq!(u.url.path(), path.as_str());
        prop_assert_eq!(u.url.query(), foreign.as_slice());
        prop_assert_eq!(u.hash, hash.map(|(h, _, _)| h));
        let kind = ArchiveKind::from_file_name(suffix).map_or(UrlKind::File, UrlKind::Archive);
        prop_assert_eq!(u.kind(), kind);
        let printed = round_trip(&input);
        if let Some((h, _, _)) = hash {
            let tail = format!("hash={h}");
            prop_assert!(printed.ends_with(&tail), "{}", printed);
        }
    }

    #[test]
    fn path_references_round_trip(
        absolute in any::<bool>(),
        parts in prop::collection::vec(prop_oneof![
            Just(String::new()), Just(".".to_owned()), Just("..".to_owned()),
            "[a-zA-Z0-9 _#&=%é-]{1,6}",
        ], 1..6),
        hash in prop::option::of(hash()),
    ) {
        let dir = format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"));
        prop_assume!(!dir.is_empty());
        let absolute = dir.starts_with('/');
        let mut text = format!("path:{dir}");
        if let Some(h) = hash {
            write!(text, "?hash={h}").unwrap();
        }
        let input: InputRef = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let InputRef::Path(p) = &input else { panic!("{text}: not a path reference") };
        prop_assert_eq!(p.hash, hash);
        prop_assert_eq!(p.path().is_absolute(), absolute);
        // Canonicalising never changes which directory is meant.
        let base = Path::new("/etc/nexis");
        prop_assert_eq!(p.resolve(base), meant(&dir));
        round_trip(&input);
    }

    #[test]
    fn hashes_round_trip(h in hash()) {
        let sri = h.to_string();
        prop_assert_eq!(sri.parse::<Hash>().unwrap(), h);
        prop_assert_eq!(format!("{}:{}", h.algo, h.to_hex()).parse::<Hash>().unwrap(), h);
        prop_assert_eq!(format!("{}:{}", h.algo, h.to_hex().to_uppercase()).parse::<Hash>().unwrap(), h);
    }
}

fn valid_percent(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    })
}

/// The directory `dir` names against `/etc/nexis`, worked out on its written parts: `.`
/// and empty parts are nothing, `..` takes the last part off, or is kept when there is
/// none (the lexical rule of `PathInput::resolve`, which keeps `/..` as `Path` does).
fn meant(dir: &str) -> PathBuf {
    let start = if dir.starts_with('/') {
        vec![]
    } else {
        vec!["etc", "nexis"]
    };
    let parts = dir
        .split('/')
        .filter(|p| !matches!(*p, "" | "."))
        .fold(start, |mut parts, p| {
            if p != ".." || parts.pop().is_none() {
                parts.push(p);
            }
            parts
        });
    PathBuf::from(format!("/{}", parts.join("/")))
}

/// Every input the fuzzer kept (crashes it found, and seeds covering each error) parses
/// to a value that round-trips, or to an error that quotes it.
#[test]
fn fuzzed_inputs_are_handled() {
    let (parsed, refused) =
        replay_fuzzed("fuzzed-ref", |file, text| match text.parse::<InputRef>() {
            Ok(input) => {
                round_trip(&input);
                true
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("input `"), "{}: {e}", file.display());
                false
            }
        });
    assert!(
        parsed >= 3 && refused >= 3,
        "{parsed} parsed, {refused} refused"
    );
}

/// The examples of `docs/inputs.md` are what nexis does: each error message in "Errors"
/// and each row of the table in "Canonical printing".
#[test]
fn documented_examples_are_exact() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/inputs.md"))
        .unwrap();
    let section = |title: &str| {
        let start = doc.find(title).unwrap_or_else(|| panic!("no {title}"));
        let rest = &doc[start + title.len()..];
        rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
    };
    let mut errors = 0;
    for line in section("## Errors")
        .lines()
        .filter(|l| l.starts_with("input `"))
    {
        let end = line.find("`: ").unwrap();
        let input = line["input `".len()..end].replace("\\t", "\t");
        let err = input.parse::<InputRef>().expect_err(line);
        assert_eq!(err.to_string(), line);
        errors += 1;
    }
    let mut rows = 0;
    for line in section("## Canonical printing")
        .lines()
        .filter(|l| l.starts_with("| `"))
    {
        let cells: Vec<&str> = line.split(" | ").collect();
        let written = cells[0].trim_start_matches("| `").trim_end_matches('`');
        let printed = cells[1].trim_start_matches('`').trim_end_matches("` |");
        let input: InputRef = written.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(input.to_string(), printed, "{written}");
        round_trip(&input);
        rows += 1;
    }
    assert!(errors >= 25 && rows >= 9, "{errors} errors, {rows} rows");
}
