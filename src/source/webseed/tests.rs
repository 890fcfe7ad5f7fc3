use super::*;
use crate::dataset::metainfo::FileTable;
use proptest::prelude::*;

/// A metainfo with the given files (a negative length = a pad file of that
/// size).
fn meta(name: &str, files: &[(i64, &[&str])]) -> Metainfo {
    let joined: Vec<(String, u64, bool)> = files
        .iter()
        .map(|(len, path)| (path.join("/"), len.unsigned_abs(), *len < 0))
        .collect();
    let files = FileTable::from_files(joined.iter().map(|(p, l, pad)| (p.as_str(), *l, *pad)));
    let offset = files.total_length();
    Metainfo {
        name: name.to_string(),
        piece_length: 16,
        piece_hashes: vec![[0; 20]; offset.div_ceil(16) as usize],
        multi_file: files.len() != 1 || files.get(0).map(|f| f.path) != Some(name),
        files,
        total_length: offset,
        url_list: vec![],
        info_hash: [0; 20],
        creation_date: None,
    }
}

#[test]
fn single_file_urls() {
    let m = meta("my file.iso", &[(10, &["my file.iso"])]);
    assert!(!m.multi_file);
    assert_eq!(
        file_url(&m, "http://h/x/data.iso", 0).unwrap(),
        "http://h/x/data.iso"
    );
    assert_eq!(
        file_url(&m, "http://h/x/", 0).unwrap(),
        "http://h/x/my%20file.iso"
    );
    assert_eq!(
        file_url(&m, "http://h/x/?t=1", 0).unwrap(),
        "http://h/x/my%20file.iso?t=1"
    );
    assert_eq!(file_url(&m, "http://h/x/", 1), None);
}

#[test]
fn multi_file_urls() {
    let m = meta("Ds 1", &[(1, &["a", "b#c.txt"]), (1, &["ü", "100%"])]);
    assert!(m.multi_file);
    assert_eq!(
        file_url(&m, "http://h/root", 0).unwrap(),
        "http://h/root/Ds%201/a/b%23c.txt"
    );
    assert_eq!(
        file_url(&m, "http://h/root/", 1).unwrap(),
        "http://h/root/Ds%201/%C3%BC/100%25"
    );
    assert_eq!(
        file_url(&m, "https://h/r?sig=x#f", 0).unwrap(),
        "https://h/r/Ds%201/a/b%23c.txt?sig=x#f"
    );
    assert_eq!(file_url(&m, "http://h/", 2), None);
}

#[test]
fn encodes_all_but_unreserved() {
    let mut out = String::new();
    encode_segment("AZaz09-._~ !\"#$&'()*+,/:;=?@[]%\u{7f}é", &mut out);
    assert_eq!(
        out,
        "AZaz09-._~%20%21%22%23%24%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D%25%7F%C3%A9"
    );
}

#[test]
fn plan_splits_at_files_and_skips_pads() {
    let m = meta(
        "d",
        &[
            (5, &["a"]),
            (-3, &[".pad", "3"]),
            (0, &["e"]),
            (4, &["b"]),
            (2, &["c"]),
        ],
    );
    let got = plan(&m, "http://s", 3..13);
    let want = vec![
        SeedRequest {
            url: "http://s/d/a".into(),
            file_offset: 3,
            len: 2,
            stream_offset: 3,
        },
        SeedRequest {
            url: "http://s/d/b".into(),
            file_offset: 0,
            len: 4,
            stream_offset: 8,
        },
        SeedRequest {
            url: "http://s/d/c".into(),
            file_offset: 0,
            len: 1,
            stream_offset: 12,
        },
    ];
    assert_eq!(got, want);
    // Clamped at the end of the stream; empty and inverted ranges plan nothing.
    assert_eq!(plan(&m, "http://s", 13..100).len(), 1);
    assert!(plan(&m, "http://s", 14..100).is_empty());
    assert!(plan(&m, "http://s", 6..6).is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = 9..2;
    assert!(plan(&m, "http://s", inverted).is_empty());
    // Entirely inside a pad file.
    assert!(plan(&m, "http://s", 5..8).is_empty());
}

fn files_strategy() -> impl Strategy<Value = Vec<(i64, bool)>> {
    proptest::collection::vec((0i64..20, proptest::bool::weighted(0.25)), 1..12)
}

proptest! {
    /// The requests cover exactly the non-pad bytes of the range, in order,
    /// each inside its own file and with that file's URL.
    #[test]
    fn plan_covers_exactly_the_non_pad_bytes(
        spec in files_strategy(),
        a in 0u64..250,
        b in 0u64..250,
    ) {
        let names: Vec<String> = (0..spec.len()).map(|i| format!("f{i}")).collect();
        let paths: Vec<[&str; 1]> = names.iter().map(|n| [n.as_str()]).collect();
        let list: Vec<(i64, &[&str])> = spec
            .iter()
            .zip(&paths)
            .map(|((len, pad), p)| (if *pad { -*len } else { *len }, &p[..]))
            .collect();
        let mut m = meta("t", &list);
        m.multi_file = true;
        let range = a.min(b)..a.max(b);
        let reqs = plan(&m, "http://s/", range.clone());

        // Byte by byte: which stream bytes should be fetched?
        let wanted: Vec<u64> = (range.start..range.end.min(m.total_length))
            .filter(|&pos| m.files.iter().any(|f| !f.pad && f.offset <= pos && pos < f.offset + f.length))
            .collect();
        let mut got = Vec::new();
        let mut last_end = range.start;
        for r in &reqs {
            prop_assert!(r.len > 0);
            prop_assert!(r.stream_offset >= last_end, "out of order or overlapping");
            // Any gap must be pad bytes (or nothing: empty files).
            for pos in last_end..r.stream_offset {
                prop_assert!(m.files.iter().any(|f| f.pad && f.offset <= pos && pos < f.offset + f.length));
            }
            let i = m.files.iter().position(|f| r.url == format!("http://s/t/{}", f.path)).unwrap();
            let f = m.files.get(i).unwrap();
            prop_assert!(!f.pad);
            prop_assert_eq!(r.stream_offset, f.offset + r.file_offset);
            prop_assert!(r.file_offset + r.len <= f.length);
            got.extend(r.stream_offset..r.stream_offset + r.len);
            last_end = r.stream_offset + r.len;
        }
        prop_assert_eq!(got, wanted);
    }
}
