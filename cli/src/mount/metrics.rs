//! `--stats-addr`: the dataset's statistics (docs/design.md, "Statistics") as
//! Prometheus text, served over plain HTTP for as long as the mount runs.
//!
//! The source is the same JSON object `gtio_stats_json` gives, so the
//! names follow it and a statistic added there appears here without a
//! change: a top-level number is a counter `gtio_<name>_total` (or a gauge
//! `gtio_<name>` for the levels listed in [`GAUGES`]); an object of numbers
//! becomes one series per key (`bytes_fetched` by `source`); the latency
//! objects (`*_us`, bucket upper bound in µs → count) become Prometheus
//! histograms in seconds, with cumulative buckets and a `_count` (the
//! library keeps no sum). Lists (`downloads`) are left out; their size is
//! `downloads_active`.
//!
//! The server answers one connection at a time with bounded reads and
//! writes, so a stuck client delays the next scrape by at most the timeout
//! and never touches the filesystem's threads.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;

/// Statistics that are levels, not running totals.
const GAUGES: [&str; 4] = [
    "downloads_active",
    "peers_connected",
    "cache_bytes_used",
    "store_bytes_used",
];

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bind `addr` now (so a bad address fails the mount) and serve on a thread.
pub fn serve(addr: &str, shared: Arc<Shared>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
            let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
            let mut req = [0u8; 4096];
            let _ = conn.read(&mut req);
            let open_files = shared.handles.lock().map(|h| h.len()).unwrap_or(0);
            let body = render(&shared.ds.stats_json(), open_files);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}

/// The Prometheus text of a `gtio_stats_json` object, plus the mount's own
/// count of open files.
pub fn render(json: &str, open_files: usize) -> String {
    let mut out = String::with_capacity(4096);
    let fields = match Json::parse(json) {
        Some(Json::Object(f)) => f,
        _ => Vec::new(),
    };
    for (name, value) in &fields {
        match value {
            Json::Number(n) if GAUGES.contains(&name.as_str()) => {
                out += &format!("# TYPE gtio_{name} gauge\ngtio_{name} {n}\n");
            }
            Json::Number(n) => {
                out += &format!("# TYPE gtio_{name}_total counter\ngtio_{name}_total {n}\n");
            }
            Json::Object(kv) if name.ends_with("_us") => histogram(&mut out, name, kv),
            Json::Object(kv) => {
                let label = if name == "bytes_fetched" {
                    "source"
                } else {
                    "key"
                };
                out += &format!("# TYPE gtio_{name}_total counter\n");
                for (k, v) in kv {
                    if let Json::Number(n) = v {
                        out += &format!("gtio_{name}_total{{{label}=\"{k}\"}} {n}\n");
                    }
                }
            }
            _ => {}
        }
    }
    out += &format!("# TYPE gtio_mount_open_files gauge\ngtio_mount_open_files {open_files}\n");
    out
}

/// `first_byte_us` → `gtio_first_byte_seconds` (cumulative buckets).
fn histogram(out: &mut String, name: &str, buckets: &[(String, Json)]) {
    let base = format!("gtio_{}_seconds", name.trim_end_matches("_us"));
    *out += &format!("# TYPE {base} histogram\n");
    let mut total = 0u64;
    for (bound, v) in buckets {
        let Json::Number(n) = v else { continue };
        total += n.parse::<u64>().unwrap_or(0);
        let le = match bound.parse::<u64>() {
            Ok(us) => (us as f64 / 1e6).to_string(),
            Err(_) => "+Inf".to_string(),
        };
        *out += &format!("{base}_bucket{{le=\"{le}\"}} {total}\n");
    }
    *out += &format!("{base}_count {total}\n");
}

/// Just enough JSON for the library's own statistics object: numbers are
/// kept as their text (they are integers).
enum Json {
    Number(String),
    Object(Vec<(String, Json)>),
    Other,
}

impl Json {
    fn parse(text: &str) -> Option<Json> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        (p.i == p.s.len()).then_some(v)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let ok = self.s.get(self.i) == Some(&c);
        self.i += usize::from(ok);
        ok
    }

    /// `depth` bounds the nesting (the object is two levels deep).
    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > 8 {
            return None;
        }
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                if self.eat(b'}') {
                    return Some(Json::Object(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    fields.push((k, self.value(depth + 1)?));
                    if self.eat(b'}') {
                        return Some(Json::Object(fields));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.eat(b']') {
                    return Some(Json::Other);
                }
                loop {
                    self.value(depth + 1)?;
                    if self.eat(b']') {
                        return Some(Json::Other);
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(|_| Json::Other),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.i += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                Some(Json::Number(n.to_string()))
            }
            _ => {
                for word in ["true", "false", "null"] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Some(Json::Other);
                    }
                }
                None
            }
        }
    }

    /// A string without escapes is all the library writes as a key; an
    /// escape is kept as its two characters (only values carry them).
    fn string(&mut self) -> Option<String> {
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let start = self.i;
        loop {
            match *self.s.get(self.i)? {
                b'"' => break,
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        let k = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
        self.i += 1;
        Some(k.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_labels_and_cumulative_histograms() {
        let json = r#"{"cache_hits":3,"bytes_fetched":{"http":5,"webseed":7},
            "downloads":[{"id":1,"state":"done"}],"cache_bytes_used":9,
            "read_us":{"10":2,"50":0,"+Inf":1}}"#;
        let text = render(json, 2);
        for line in [
            "gtio_cache_hits_total 3",
            "gtio_bytes_fetched_total{source=\"webseed\"} 7",
            "# TYPE gtio_cache_bytes_used gauge",
            "gtio_cache_bytes_used 9",
            "gtio_read_seconds_bucket{le=\"0.00001\"} 2",
            "gtio_read_seconds_bucket{le=\"0.00005\"} 2",
            "gtio_read_seconds_bucket{le=\"+Inf\"} 3",
            "gtio_read_seconds_count 3",
            "gtio_mount_open_files 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("downloads_total"), "{text}");
    }

    #[test]
    fn bad_json_gives_only_the_mount_gauge() {
        assert_eq!(render("{\"a\":", 0).lines().count(), 2);
    }
}
