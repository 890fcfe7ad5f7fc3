use super::*;
use crate::bencode::{encode, Dict, Value};
use proptest::prelude::*;

fn dict<'a>(entries: Vec<(&'a str, Value<'a>)>) -> Value<'a> {
    Value::Dict(
        Dict::from_entries(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes(), v))
                .collect(),
        )
        .unwrap(),
    )
}

fn s(v: &str) -> Value<'_> {
    Value::Bytes(v.as_bytes())
}

fn file<'a>(len: i64, path: &[&'a str]) -> Value<'a> {
    dict(vec![
        ("length", Value::Int(len)),
        ("path", Value::List(path.iter().map(|p| s(p)).collect())),
    ])
}

/// A metainfo around `info_extra` (name, piece length 4 and the right
/// number of zero hashes are added unless `info_extra` overrides them).
fn torrent(
    info_extra: Vec<(&str, Value<'_>)>,
    top_extra: Vec<(&str, Value<'_>)>,
    pieces: usize,
) -> Vec<u8> {
    let zeros = vec![0u8; pieces * 20];
    let mut info: Vec<(&str, Value<'_>)> = Vec::new();
    for (k, v) in [
        ("name", s("ds")),
        ("piece length", Value::Int(4)),
        ("pieces", Value::Bytes(&zeros)),
    ] {
        if !info_extra.iter().any(|(ek, _)| *ek == k) {
            info.push((k, v));
        }
    }
    info.extend(info_extra.into_iter().filter(|(_, v)| *v != s("<omit>")));
    let mut top = vec![("info", dict(info))];
    top.extend(top_extra);
    encode(&dict(top))
}

fn single(len: i64, pieces: usize) -> Vec<u8> {
    torrent(vec![("length", Value::Int(len))], vec![], pieces)
}

fn multi(files: Vec<Value<'_>>, pieces: usize) -> Vec<u8> {
    torrent(vec![("files", Value::List(files))], vec![], pieces)
}

fn reject(buf: &[u8], needle: &str) {
    match parse(buf) {
        Ok(m) => panic!("accepted {:?}: {m:?}", String::from_utf8_lossy(buf)),
        Err(e) => {
            assert_eq!(e.errno(), libc::EINVAL, "{e:?}");
            assert!(
                e.message().contains(needle),
                "message {:?} lacks {needle:?}",
                e.message()
            );
        }
    }
}

#[test]
fn parses_single_file() {
    let buf = torrent(
        vec![("length", Value::Int(10))],
        vec![("url-list", s("http://h/f.bin"))],
        3,
    );
    let m = parse(&buf).unwrap();
    assert_eq!(m.name, "ds");
    assert!(!m.multi_file);
    assert_eq!(m.total_length, 10);
    assert_eq!(m.piece_length, 4);
    assert_eq!(m.piece_hashes.len(), 3);
    assert_eq!(
        m.files.iter().collect::<Vec<_>>(),
        vec![MetaFile {
            path: "ds",
            length: 10,
            offset: 0,
            pad: false,
            symlink: None,
        }]
    );
    assert_eq!(m.url_list, vec!["http://h/f.bin".to_string()]);
    assert_eq!(m.piece_range(0), 0..4);
    assert_eq!(m.piece_range(2), 8..10);
    assert_eq!(m.piece_range(3), 10..10);
    assert_eq!(m.piece_range(u32::MAX), 10..10);
    assert_eq!(m.piece_count(), 3);
}

#[test]
fn info_hash_is_sha1_of_the_raw_info_bytes() {
    let buf = single(10, 3);
    let m = parse(&buf).unwrap();
    // The info dict sits between "d4:info" and the final "e".
    let raw = &buf[7..buf.len() - 1];
    let expected: [u8; 20] = Sha1::digest(raw).into();
    assert_eq!(m.info_hash, expected);
}

#[test]
fn parses_multi_file_with_pad_files() {
    let files = vec![
        file(3, &["a", "x.bin"]),
        dict(vec![
            ("attr", s("p")),
            ("length", Value::Int(1)),
            ("path", Value::List(vec![s(".pad"), s("1")])),
        ]),
        file(0, &["empty"]),
        file(4, &["b"]),
        file(2, &[".pad", "2"]),
        file(2, &["c", "_____padding_file_0"]),
        file(1, &["z"]),
    ];
    let buf = torrent(
        vec![("files", Value::List(files))],
        vec![(
            "url-list",
            Value::List(vec![s(""), s("http://a/"), s("http://b/r")]),
        )],
        4,
    );
    let m = parse(&buf).unwrap();
    assert!(m.multi_file);
    assert_eq!(m.total_length, 13);
    let summary: Vec<_> = m
        .files
        .iter()
        .map(|f| (f.path.to_string(), f.offset, f.length, f.pad))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a/x.bin".to_string(), 0, 3, false),
            (".pad/1".to_string(), 3, 1, true),
            ("empty".to_string(), 4, 0, false),
            ("b".to_string(), 4, 4, false),
            (".pad/2".to_string(), 8, 2, true),
            ("c/_____padding_file_0".to_string(), 10, 2, true),
            ("z".to_string(), 12, 1, false),
        ]
    );
    let visible: Vec<_> = m.visible_files().map(|f| f.path).collect();
    assert_eq!(visible, ["a/x.bin", "empty", "b", "z"]);
    assert_eq!(m.url_list, ["http://a/", "http://b/r"]);
}

#[test]
fn rejects_empty_dataset() {
    // Every peer refuses a torrent with no pieces, so gtio does too.
    reject(&single(0, 0), "has no data");
    reject(&single(0, 1), "has 1 hashes, expected 0");
}

#[test]
fn prefers_utf8_keys() {
    let buf = torrent(
        vec![
            ("name", Value::Bytes(b"\xe9t\xe9")),
            ("name.utf-8", s("été")),
            (
                "files",
                Value::List(vec![dict(vec![
                    ("length", Value::Int(1)),
                    ("path", Value::List(vec![Value::Bytes(b"\xff")])),
                    ("path.utf-8", Value::List(vec![s("ü")])),
                ])]),
            ),
        ],
        vec![],
        1,
    );
    let m = parse(&buf).unwrap();
    assert_eq!(m.name, "été");
    assert_eq!(m.files.get(0).unwrap().path, "ü");
}

#[test]
fn rejects_bad_framing() {
    reject(&vec![b' '; MAX_METAINFO_BYTES + 1], "over the 64 MiB limit");
    reject(b"le", "metainfo is a list, not a dictionary");
    reject(b"de junk", "trailing data");
    reject(b"d3:fooi1ee", "missing 'info' dictionary");
    reject(b"d4:infoi1ee", "'info' is an integer, not a dictionary");
    // Out-of-order keys load (libtorrent does); the hash is of the raw bytes.
    let unsorted = b"d4:infod6:lengthi1e4:name1:a12:piece lengthi1e6:pieces20:aaaaaaaaaaaaaaaaaaaa5:aaaaai1eee";
    let m = parse(unsorted).unwrap();
    let raw = &unsorted[7..unsorted.len() - 1];
    assert_eq!(m.info_hash, <[u8; 20]>::from(Sha1::digest(raw)));
    // A `url-list` of the wrong type names no seeds; libtorrent loads it.
    let m = parse(&torrent(
        vec![("length", Value::Int(1))],
        vec![("url-list", Value::Int(3))],
        1,
    ))
    .unwrap();
    assert!(m.url_list.is_empty());
}

/// BEP 47 symlinks take no bytes of the stream, need no length, and keep
/// their target; the files after them keep their offsets.
#[test]
fn symlinks_have_no_bytes() {
    let link = |len: Option<i64>, name: &'static str| {
        let mut e = vec![
            ("attr", s("l")),
            ("path", Value::List(vec![s(name)])),
            ("symlink path", Value::List(vec![s("a"), s("x.bin")])),
        ];
        if let Some(len) = len {
            e.push(("length", Value::Int(len)));
        }
        dict(e)
    };
    let files = vec![
        file(3, &["a", "x.bin"]),
        link(Some(425), "l1"),
        link(None, "l2"),
        file(5, &["z"]),
    ];
    let m = parse(&multi(files, 2)).unwrap();
    assert_eq!(m.total_length, 8);
    let summary: Vec<_> = m
        .files
        .iter()
        .map(|f| (f.path, f.offset, f.length, f.pad, f.symlink))
        .collect();
    assert_eq!(
        summary,
        [
            ("a/x.bin", 0, 3, false, None),
            ("l1", 3, 0, false, Some("a/x.bin")),
            ("l2", 3, 0, false, Some("a/x.bin")),
            ("z", 3, 5, false, None),
        ]
    );
    // 'l' without a 'symlink path' is an empty plain file (libtorrent's
    // reading): its length does not count either.
    let plain = dict(vec![
        ("attr", s("l")),
        ("length", Value::Int(4)),
        ("path", Value::List(vec![s("p")])),
    ]);
    let m = parse(&multi(vec![plain, file(1, &["q"])], 1)).unwrap();
    assert_eq!(m.files.get(0).unwrap().symlink, None);
    assert_eq!(m.files.get(0).unwrap().length, 0);
    assert_eq!(m.total_length, 1);
    // A target is a path like any other: no escaping the dataset.
    let bad = dict(vec![
        ("attr", s("l")),
        ("path", Value::List(vec![s("l")])),
        ("symlink path", Value::List(vec![s(".."), s("etc")])),
    ]);
    reject(
        &multi(vec![file(1, &["f"]), bad], 1),
        "files[1].symlink path segment \"..\"",
    );
    // A symlink's path collides like a file's.
    reject(
        &multi(vec![file(1, &["a"]), link(None, "a")], 1),
        "duplicate file path \"a\"",
    );
}

#[test]
fn refuses_v2_only_and_totals_past_int64_max() {
    let v2 = torrent(
        vec![
            ("meta version", Value::Int(2)),
            ("file tree", dict(vec![])),
            ("length", Value::Int(1)),
            ("pieces", s("<omit>")),
        ],
        vec![],
        0,
    );
    reject(&v2, "BitTorrent v2-only metainfo");
    // Two files of 2^62 bytes: 2^63 overflows int64_t, not u64.
    let buf = torrent(
        vec![
            ("piece length", Value::Int(1 << 62)),
            (
                "files",
                Value::List(vec![file(1 << 62, &["a"]), file(1 << 62, &["b"])]),
            ),
        ],
        vec![],
        2,
    );
    let e = parse(&buf).unwrap_err();
    assert_eq!(e.errno(), libc::EFBIG, "{e:?}");
    assert!(e.message().contains("INT64_MAX"), "{e}");
}

/// Paths are compared segment by segment: "a" (a file) and "a/b" conflict
/// even with "a-" and "a.b" sorting between them bytewise.
#[test]
fn file_and_directory_conflict_found_across_bytewise_neighbours() {
    reject(
        &multi(
            vec![
                file(1, &["a"]),
                file(1, &["a-"]),
                file(1, &["a.b"]),
                file(1, &["a", "b"]),
            ],
            1,
        ),
        "is both a file and a directory",
    );
}

/// A bad `url-list` entry is skipped, not fatal (libtorrent does the same).
#[test]
fn skips_bad_url_list_entries() {
    let buf = torrent(
        vec![("length", Value::Int(1))],
        vec![(
            "url-list",
            Value::List(vec![
                Value::Int(3),
                Value::List(vec![s("http://nested/")]),
                Value::Bytes(b"\xff"),
                s("http://ok/"),
            ]),
        )],
        1,
    );
    assert_eq!(parse(&buf).unwrap().url_list, ["http://ok/"]);
}

#[test]
fn rejects_bad_info_fields() {
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("name", s("<omit>"))],
            vec![],
            1,
        ),
        "missing 'name'",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("name", Value::Int(1))],
            vec![],
            1,
        ),
        "'name' is an integer",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("name", s(".."))],
            vec![],
            1,
        ),
        "invalid name \"..\"",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("name", s("a/b"))],
            vec![],
            1,
        ),
        "contains a path separator",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("name", s("/etc"))],
            vec![],
            1,
        ),
        "contains a path separator",
    );
    reject(
        &torrent(vec![("length", Value::Int(1)), ("name", s(""))], vec![], 1),
        "empty path segment",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("name", Value::Bytes(b"\xc3("))],
            vec![],
            1,
        ),
        "'name' is not UTF-8",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("piece length", s("<omit>"))],
            vec![],
            1,
        ),
        "missing 'piece length'",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("piece length", Value::Int(0))],
            vec![],
            1,
        ),
        "piece length 0 is not positive",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("piece length", Value::Int(-4))],
            vec![],
            1,
        ),
        "piece length -4 is not positive",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("piece length", s("4"))],
            vec![],
            1,
        ),
        "'piece length' is a string",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("pieces", s("<omit>"))],
            vec![],
            0,
        ),
        "missing 'pieces'",
    );
    reject(
        &torrent(
            vec![
                ("length", Value::Int(1)),
                ("pieces", Value::Bytes(&[0; 21])),
            ],
            vec![],
            0,
        ),
        "21 bytes, not a multiple of 20",
    );
    reject(
        &torrent(
            vec![("length", Value::Int(1)), ("pieces", Value::List(vec![]))],
            vec![],
            0,
        ),
        "'pieces' is a list",
    );
    reject(
        &single(10, 2),
        "has 2 hashes, expected 3 for 10 bytes in pieces of 4",
    );
    reject(&single(8, 3), "has 3 hashes, expected 2");
    reject(&single(-1, 0), "'length' -1 is negative");
    reject(
        &torrent(vec![("length", s("1"))], vec![], 1),
        "'length' is a string",
    );
    reject(
        &torrent(
            vec![
                ("length", Value::Int(1)),
                ("files", Value::List(vec![file(1, &["a"])])),
            ],
            vec![],
            1,
        ),
        "both 'length' and 'files'",
    );
    reject(&torrent(vec![], vec![], 0), "neither 'length' nor 'files'");
}

#[test]
fn rejects_bad_file_lists() {
    reject(
        &torrent(vec![("files", Value::Int(1))], vec![], 0),
        "'files' is an integer",
    );
    reject(&multi(vec![], 0), "'files' is empty");
    reject(
        &multi(vec![s("a")], 0),
        "files[0] is a string, not a dictionary",
    );
    reject(
        &multi(vec![dict(vec![("path", Value::List(vec![s("a")]))])], 0),
        "files[0] has no 'length'",
    );
    reject(
        &multi(vec![dict(vec![("length", Value::Int(1))])], 1),
        "files[0] has no 'path'",
    );
    reject(
        &multi(vec![file(1, &["a"]), file(-2, &["b"])], 1),
        "'files[1].length' -2 is negative",
    );
    reject(
        &multi(vec![file(1, &[])], 1),
        "files[0].path is an empty list",
    );
    reject(&multi(vec![file(1, &["a", ""])], 1), "empty path segment");
    reject(
        &multi(vec![file(1, &["."])], 1),
        "'.' and '..' are not allowed",
    );
    reject(
        &multi(vec![file(1, &["a", ".."])], 1),
        "'.' and '..' are not allowed",
    );
    reject(
        &multi(vec![file(1, &["a/b"])], 1),
        "contains a path separator",
    );
    reject(
        &multi(vec![file(1, &["a\\b"])], 1),
        "contains a path separator",
    );
    reject(&multi(vec![file(1, &["a\0b"])], 1), "contains NUL");
    reject(
        &multi(
            vec![dict(vec![
                ("length", Value::Int(1)),
                ("path", Value::List(vec![Value::Bytes(b"\xff")])),
            ])],
            1,
        ),
        "files[0].path' is not UTF-8",
    );
    reject(
        &multi(
            vec![dict(vec![
                ("length", Value::Int(1)),
                ("path", Value::List(vec![Value::Int(1)])),
            ])],
            1,
        ),
        "has an integer segment",
    );
    reject(
        &multi(
            vec![dict(vec![("length", Value::Int(1)), ("path", s("a"))])],
            1,
        ),
        "files[0].path is a string",
    );
    reject(
        &multi(
            vec![dict(vec![
                ("attr", Value::Int(1)),
                ("length", Value::Int(1)),
                ("path", Value::List(vec![s("a")])),
            ])],
            1,
        ),
        "files[0].attr is an integer",
    );
    reject(
        &multi(
            vec![
                file(i64::MAX, &["a"]),
                file(i64::MAX, &["b"]),
                file(i64::MAX, &["c"]),
            ],
            0,
        ),
        "total length overflows at files[2]",
    );
    reject(
        &multi(vec![file(1, &["a", "b"]), file(1, &["a", "b"])], 1),
        "duplicate file path \"a/b\"",
    );
    reject(
        &multi(vec![file(1, &["a"]), file(1, &["a", "b"])], 1),
        "\"a\" is both a file and a directory",
    );
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&input);
    }

    #[test]
    fn parse_never_panics_on_mutated_torrents(
        which in 0..2usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut buf = if which == 0 {
            single(10, 3)
        } else {
            multi(vec![file(3, &["a", "b"]), file(0, &["c"]), file(9, &["d e"])], 3)
        };
        for (at, byte) in edits {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        if truncate {
            buf.truncate(cut.index(buf.len()));
        }
        if let Ok(m) = parse(&buf) {
            // Whatever is accepted satisfies the invariants.
            let mut offset = 0u64;
            for f in &m.files {
                prop_assert_eq!(f.offset, offset);
                offset += f.length;
            }
            prop_assert_eq!(offset, m.total_length);
            prop_assert_eq!(m.piece_hashes.len() as u64, m.total_length.div_ceil(m.piece_length));
        }
    }
}
