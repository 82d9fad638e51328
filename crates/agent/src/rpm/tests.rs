use super::*;
use proptest::prelude::*;

enum Value<'a> {
    Str(&'a str),
    I18n(&'a [&'a str]),
    Int32(u32),
    StrArray(&'a [&'a str]),
    Bin(&'a [u8]),
}

/// A header laid out as rpm writes one (`headerExport`): entries sorted by
/// tag, each value in the data store in entry order, INT32s aligned to 4.
fn render(entries: &[(u32, Value<'_>)], magic: bool) -> Vec<u8> {
    let mut index = Vec::new();
    let mut store: Vec<u8> = Vec::new();
    let mut sorted: Vec<&(u32, Value<'_>)> = entries.iter().collect();
    sorted.sort_by_key(|(tag, _)| *tag);
    for (tag, value) in sorted {
        let (kind, count) = match value {
            Value::Str(_) => (TYPE_STRING, 1),
            Value::I18n(list) => (TYPE_I18NSTRING, list.len()),
            Value::Int32(_) => {
                while !store.len().is_multiple_of(4) {
                    store.push(0);
                }
                (TYPE_INT32, 1)
            }
            Value::StrArray(list) => (8, list.len()),
            Value::Bin(b) => (7, b.len()),
        };
        let offset = store.len();
        match value {
            Value::Str(s) => {
                store.extend_from_slice(s.as_bytes());
                store.push(0);
            }
            Value::I18n(list) | Value::StrArray(list) => {
                for s in *list {
                    store.extend_from_slice(s.as_bytes());
                    store.push(0);
                }
            }
            Value::Int32(n) => store.extend_from_slice(&n.to_be_bytes()),
            Value::Bin(b) => store.extend_from_slice(b),
        }
        for word in [*tag, kind, offset as u32, count as u32] {
            index.extend_from_slice(&word.to_be_bytes());
        }
    }
    let mut out = Vec::new();
    if magic {
        out.extend_from_slice(&HEADER_MAGIC);
    }
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&(store.len() as u32).to_be_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(&store);
    out
}

/// The header of Rocky Linux 9's bash, as `rpm -q --qf` shows its fields,
/// with the region tag and a few tags the parser skips.
fn bash() -> Vec<u8> {
    render(
        &[
            (
                63,
                Value::Bin(&[0, 0, 0, 63, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0x90, 0, 0, 0, 16]),
            ),
            (TAG_NAME, Value::Str("bash")),
            (TAG_VERSION, Value::Str("5.1.8")),
            (TAG_RELEASE, Value::Str("9.el9")),
            (1004, Value::I18n(&["The GNU Bourne Again shell"])),
            (TAG_ARCH, Value::Str("x86_64")),
            (1117, Value::StrArray(&["bash", "bashbug"])),
            (TAG_SOURCERPM, Value::Str("bash-5.1.8-9.el9.src.rpm")),
        ],
        false,
    )
}

fn check(bytes: &[u8], expect: (&str, &str, &str, &str, &str)) {
    let p = parse_header(bytes, &RpmLimits::default()).expect("parses");
    assert_eq!(
        (
            p.name.as_str(),
            p.version.as_str(),
            p.architecture.as_str(),
            p.source.as_str(),
            p.source_version.as_str()
        ),
        expect
    );
}

#[test]
fn a_database_blob_and_a_file_header() {
    let expect = ("bash", "5.1.8-9.el9", "x86_64", "bash", "5.1.8-9.el9");
    check(&bash(), expect);
    let mut with_magic = HEADER_MAGIC.to_vec();
    with_magic.extend_from_slice(&bash());
    check(&with_magic, expect);
}

#[test]
fn epochs_sources_and_pseudo_packages() {
    check(
        &render(
            &[
                (TAG_NAME, Value::Str("perl-libs")),
                (TAG_EPOCH, Value::Int32(4)),
                (TAG_VERSION, Value::Str("5.32.1")),
                (TAG_RELEASE, Value::Str("480.el9")),
                (TAG_ARCH, Value::Str("x86_64")),
                (TAG_SOURCERPM, Value::Str("perl-5.32.1-480.el9.src.rpm")),
            ],
            false,
        ),
        (
            "perl-libs",
            "4:5.32.1-480.el9",
            "x86_64",
            "perl",
            "4:5.32.1-480.el9",
        ),
    );
    // gpg-pubkey: no architecture, no source package.
    check(
        &render(
            &[
                (TAG_NAME, Value::Str("gpg-pubkey")),
                (TAG_VERSION, Value::Str("350d275d")),
                (TAG_RELEASE, Value::Str("6267b6d0")),
            ],
            false,
        ),
        (
            "gpg-pubkey",
            "350d275d-6267b6d0",
            "",
            "gpg-pubkey",
            "350d275d-6267b6d0",
        ),
    );
    // A source named with another version: the text before the last two dashes.
    check(
        &render(
            &[
                (TAG_NAME, Value::Str("kernel-core")),
                (TAG_VERSION, Value::Str("5.14.0")),
                (TAG_RELEASE, Value::Str("362.8.1.el9_3")),
                (TAG_SOURCERPM, Value::Str("kernel-5.14.0-362.el9.src.rpm")),
            ],
            false,
        ),
        (
            "kernel-core",
            "5.14.0-362.8.1.el9_3",
            "",
            "kernel",
            "5.14.0-362.8.1.el9_3",
        ),
    );
}

#[test]
fn malformed_headers_are_refused() {
    let good = bash();
    let cases: Vec<(Vec<u8>, RpmError)> = vec![
        (vec![], RpmError::Truncated),
        (good[..good.len() - 1].to_vec(), RpmError::Truncated),
        ([good.clone(), vec![0]].concat(), RpmError::TrailingBytes),
        (
            {
                let mut b = good.clone();
                b[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
                b
            },
            RpmError::TooManyEntries {
                count: u64::from(u32::MAX),
                max: 65_535,
            },
        ),
        (
            render(&[(TAG_NAME, Value::Int32(1))], false),
            RpmError::BadEntry {
                tag: TAG_NAME,
                why: "not a string",
            },
        ),
        (
            render(&[(TAG_EPOCH, Value::Str("1"))], false),
            RpmError::BadEntry {
                tag: TAG_EPOCH,
                why: "not an INT32",
            },
        ),
        (
            render(&[(TAG_VERSION, Value::Str("1"))], false),
            RpmError::Missing("name"),
        ),
        (
            render(
                &[(TAG_NAME, Value::Str("a")), (TAG_VERSION, Value::Str("1"))],
                false,
            ),
            RpmError::Missing("release"),
        ),
    ];
    for (bytes, expect) in cases {
        assert_eq!(parse_header(&bytes, &RpmLimits::default()), Err(expect));
    }
    // A string without its NUL, and one pointing past the store.
    let mut unterminated = render(&[(TAG_NAME, Value::Str("bash"))], false);
    let last = unterminated.len() - 1;
    unterminated[last] = b'x';
    assert_eq!(
        parse_header(&unterminated, &RpmLimits::default()),
        Err(RpmError::BadEntry {
            tag: TAG_NAME,
            why: "not NUL-terminated"
        })
    );
    let mut outside = render(&[(TAG_NAME, Value::Str("bash"))], false);
    outside[16..20].copy_from_slice(&1000u32.to_be_bytes());
    assert_eq!(
        parse_header(&outside, &RpmLimits::default()),
        Err(RpmError::BadEntry {
            tag: TAG_NAME,
            why: "outside the data store"
        })
    );
}

#[test]
fn limits_are_enforced() {
    let small = RpmLimits {
        max_header_bytes: 16,
        ..RpmLimits::default()
    };
    assert_eq!(
        parse_header(&bash(), &small),
        Err(RpmError::TooLarge { max: 16 })
    );
    let long = "x".repeat(300);
    let header = render(
        &[
            (TAG_NAME, Value::Str(&long)),
            (TAG_VERSION, Value::Str("1")),
            (TAG_RELEASE, Value::Str("1")),
        ],
        false,
    );
    assert_eq!(
        parse_header(&header, &RpmLimits::default()),
        Err(RpmError::FieldTooLong {
            field: "name",
            max: 256
        })
    );
}

proptest! {
    /// parse(render(x)) == x.
    #[test]
    fn headers_read_back(
        name in "[a-z][a-z0-9+._-]{0,30}",
        version in "[0-9][0-9a-z.+~^]{0,15}",
        release in "[0-9][0-9a-z._]{0,15}",
        arch in "(x86_64|aarch64|noarch|i686)",
        epoch in proptest::option::of(0u32..100),
    ) {
        let source_rpm = format!("{name}-{version}-{release}.src.rpm");
        let mut entries = vec![
            (TAG_NAME, Value::Str(&name)),
            (TAG_VERSION, Value::Str(&version)),
            (TAG_RELEASE, Value::Str(&release)),
            (TAG_ARCH, Value::Str(&arch)),
            (TAG_SOURCERPM, Value::Str(&source_rpm)),
        ];
        if let Some(e) = epoch {
            entries.push((TAG_EPOCH, Value::Int32(e)));
        }
        let p = parse_header(&render(&entries, false), &RpmLimits::default()).expect("parses");
        let evr = match epoch {
            Some(e) => format!("{e}:{version}-{release}"),
            None => format!("{version}-{release}"),
        };
        prop_assert_eq!(p.name, name.clone());
        prop_assert_eq!(p.version, evr.clone());
        prop_assert_eq!(p.architecture, arch);
        prop_assert_eq!(p.source, name);
        prop_assert_eq!(p.source_version, evr);
    }

    /// Any mutation of a good header is read or refused, never a panic.
    #[test]
    fn mutations_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = bash();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = parse_header(&bytes, &RpmLimits::default());
        let _ = parse_header(&bytes[..cut.index(bytes.len())], &RpmLimits::default());
    }
}
