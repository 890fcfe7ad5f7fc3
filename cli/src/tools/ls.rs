//! `gtio ls`: a dataset's files with their stream offsets and sizes.

use std::io::{self, Write};

use super::human_bytes;
use gtio::Dataset;

/// Write the listing: a summary line, then `OFFSET SIZE NAME` in aligned
/// columns; or, with `json`, one JSON object
/// `{"name", "size", "files": [{"name", "offset", "size"}]}`.
pub fn ls(ds: &Dataset, json: bool, out: &mut dyn Write) -> io::Result<()> {
    let files = ds.files();
    if json {
        let mut s = String::new();
        s.push_str("{\"name\":");
        push_json_str(&mut s, ds.name());
        s.push_str(&format!(",\"size\":{},\"files\":[", ds.size()));
        for (i, f) in files.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"name\":");
            push_json_str(&mut s, &f.name);
            s.push_str(&format!(",\"offset\":{},\"size\":{}", f.offset, f.size));
            if let Some(target) = &f.symlink {
                s.push_str(",\"symlink\":");
                push_json_str(&mut s, target);
            }
            s.push('}');
        }
        s.push_str("]}\n");
        return out.write_all(s.as_bytes());
    }
    let plural = if files.len() == 1 { "" } else { "s" };
    let mut s = format!(
        "{}: {} file{plural}, {} ({} bytes)\n",
        ds.name(),
        files.len(),
        human_bytes(ds.size()),
        ds.size()
    );
    let w_off = files
        .iter()
        .map(|f| f.offset.to_string().len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let w_size = files
        .iter()
        .map(|f| f.size.to_string().len())
        .chain([4])
        .max()
        .unwrap_or(4);
    s.push_str(&format!(
        "{:>w_off$}  {:>w_size$}  NAME\n",
        "OFFSET", "SIZE"
    ));
    for f in files {
        s.push_str(&format!(
            "{:>w_off$}  {:>w_size$}  {}\n",
            f.offset,
            f.size,
            f.name.escape_debug()
        ));
        if let Some(target) = &f.symlink {
            // A BEP 47 symlink: `name -> target`, like ls -l.
            s.pop();
            s.push_str(&format!(" -> {}\n", target.escape_debug()));
        }
    }
    out.write_all(s.as_bytes())
}

/// Append `v` as a JSON string.
pub fn push_json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
    }
}
