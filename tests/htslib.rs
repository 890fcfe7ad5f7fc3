//! The htslib plugin (htslib/hfile_gtio.c) with Debian's samtools, bcftools
//! and tabix: a BAM and a bgzipped, tabix-indexed VCF made here, served by
//! nginx as plain objects and as members of a multi-file torrent with a web
//! seed. Every command's output through `gtio+http://…` must be identical to
//! the same command on the local files. A second test reads nginx's access
//! log: what the plugin asks of the server (bounded ranges, one request for a
//! missing index, at most 2 requests per region after the first). Skipped
//! (with a message) only when samtools is not installed
//! (scripts/install-deps.sh installs it).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::nginx::{tempdir, Nginx};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Compile the plugin into `dir` against the build tree's libgtio.so.
fn build_plugin(dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let release = root.join("target/release");
    assert!(
        release.join("libgtio.so").exists(),
        "target/release/libgtio.so is missing: run cargo build --release"
    );
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-shared",
        ])
        .arg(format!("-I{}", root.join("include").display()))
        .arg(root.join("htslib/hfile_gtio.c"))
        .arg("-o")
        .arg(dir.join("hfile_gtio.so"))
        .arg(format!("-L{}", release.display()))
        .arg(format!("-Wl,-rpath,{}", release.display()))
        .args(["-lgtio", "-lpthread"])
        .output()
        .expect("cannot run cc");
    assert!(
        out.status.success(),
        "plugin did not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(cmd: &str, args: &[&str], hts_path: &Path) -> (bool, Vec<u8>, String) {
    run_env(cmd, args, hts_path, &[])
}

fn run_env(
    cmd: &str,
    args: &[&str],
    hts_path: &Path,
    env: &[(&str, &Path)],
) -> (bool, Vec<u8>, String) {
    // `timeout` bounds every network wait of the tool.
    let cwd = tempdir();
    let out = Command::new("timeout")
        .arg("120")
        .arg(cmd)
        .args(args)
        .env("HTS_PATH", format!("{}:", hts_path.display()))
        .envs(env.iter().copied())
        // htslib keeps a copy of a remote index in the working directory and
        // reuses it: run in a fresh one so every index is read through gtio.
        .current_dir(cwd.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn must(cmd: &str, args: &[&str], hts_path: &Path) -> Vec<u8> {
    must_env(cmd, args, hts_path, &[])
}

fn must_env(cmd: &str, args: &[&str], hts_path: &Path, env: &[(&str, &Path)]) -> Vec<u8> {
    let (ok, out, err) = run_env(cmd, args, hts_path, env);
    assert!(ok, "{cmd} {args:?} failed:\n{err}");
    out
}

/// A small deterministic generator (no dependency on a rand crate).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const LEN: u64 = 400_000;

fn write_sam(path: &Path) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut s = format!("@HD\tVN:1.6\n@SQ\tSN:chr1\tLN:{LEN}\n@SQ\tSN:chr2\tLN:{LEN}\n");
    for i in 0..30_000 {
        let chr = if rng.below(2) == 0 { "chr1" } else { "chr2" };
        let pos = 1 + rng.below(LEN - 100);
        let seq: String = (0..100)
            .map(|_| b"ACGT"[rng.below(4) as usize] as char)
            .collect();
        s.push_str(&format!(
            "r{i}\t0\t{chr}\t{pos}\t60\t100M\t*\t0\t0\t{seq}\t{}\n",
            "I".repeat(100)
        ));
    }
    std::fs::write(path, s).unwrap();
}

fn write_vcf(path: &Path) {
    let mut s = String::from("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=400000>\n##contig=<ID=chr2,length=400000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n");
    for chr in ["chr1", "chr2"] {
        for i in 0..20_000u64 {
            s.push_str(&format!("{chr}\t{}\tv{i}\tA\tG\t50\tPASS\t.\n", 1 + i * 19));
        }
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn samtools_bcftools_tabix_through_gtio() {
    if !have("samtools") {
        eprintln!("SKIPPED: samtools is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    for tool in ["bcftools", "tabix", "bgzip", "mktorrent"] {
        assert!(have(tool), "{tool} is missing: run scripts/install-deps.sh");
    }
    let tmp = tempdir();
    let plugins = tmp.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    build_plugin(&plugins);

    let root = tmp.join("www");
    let set = root.join("set/dir");
    std::fs::create_dir_all(&set).unwrap();
    let sam = tmp.join("a.sam");
    write_sam(&sam);
    let bam = set.join("a.bam");
    let bam_s = bam.to_str().unwrap();
    must(
        "samtools",
        &["sort", "-o", bam_s, sam.to_str().unwrap()],
        &plugins,
    );
    must("samtools", &["index", bam_s], &plugins);
    let vcf = set.join("v.vcf");
    write_vcf(&vcf);
    must("bgzip", &["-f", vcf.to_str().unwrap()], &plugins);
    let vcf_gz: PathBuf = set.join("v.vcf.gz");
    let vcf_s = vcf_gz.to_str().unwrap();
    must("tabix", &["-p", "vcf", vcf_s], &plugins);

    // A member whose name needs percent-encoding in a URL fragment.
    std::fs::copy(&bam, set.join("b c.bam")).unwrap();
    std::fs::copy(set.join("a.bam.bai"), set.join("b c.bam.bai")).unwrap();

    let ngx = Nginx::start(&root);
    let torrent = root.join("set.torrent");
    let out = Command::new("mktorrent")
        .args(["-l", "16", "-w", &ngx.url(""), "-o"])
        .arg(&torrent)
        .arg(root.join("set"))
        .output()
        .expect("mktorrent");
    assert!(
        out.status.success(),
        "mktorrent: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let forms = [
        ("plain", format!("gtio+{}", ngx.url("set/dir/")), ""),
        (
            "torrent",
            format!("gtio+{}", ngx.url("set.torrent")),
            "#dir/",
        ),
        ("https", format!("gtio+{}", ngx.tls_url("set/dir/")), ""),
        (
            "https torrent",
            format!("gtio+{}", ngx.tls_url("set.torrent")),
            "#dir/",
        ),
        ("file", format!("gtio+file://{}/", set.display()), ""),
    ];
    let ca = ngx.ca_cert();
    let env: &[(&str, &Path)] = &[("GTIO_CA_BUNDLE", &ca)];
    let regions = [
        "chr1:1000-2000",
        "chr2:50000-60000",
        "chr1:350000-399999",
        "chr2",
    ];
    for (form, base, sep) in &forms {
        let remote = |name: &str| format!("{base}{sep}{name}");
        let rbam = remote("a.bam");
        let rvcf = remote("v.vcf.gz");
        for r in regions {
            let local = must("samtools", &["view", bam_s, r], &plugins);
            assert!(
                !local.is_empty(),
                "region {r} is empty: the test would prove nothing"
            );
            let got = must_env("samtools", &["view", &rbam, r], &plugins, env);
            assert!(got == local, "{form}: samtools view {r} differs");
        }
        let local = must("samtools", &["idxstats", bam_s], &plugins);
        assert_eq!(
            must_env("samtools", &["idxstats", &rbam], &plugins, env),
            local,
            "{form} idxstats"
        );
        let local = must(
            "bcftools",
            &["view", "-H", "-r", "chr2:1000-5000", vcf_s],
            &plugins,
        );
        assert!(!local.is_empty());
        let got = must_env(
            "bcftools",
            &["view", "-H", "-r", "chr2:1000-5000", &rvcf],
            &plugins,
            env,
        );
        assert!(got == local, "{form}: bcftools view -r differs");
        let local = must("tabix", &[vcf_s, "chr1:100000-101000"], &plugins);
        assert!(!local.is_empty());
        let got = must_env("tabix", &[&rvcf, "chr1:100000-101000"], &plugins, env);
        assert!(got == local, "{form}: tabix differs");
    }

    // A percent-encoded member (and its index, found the same way).
    let local = must("samtools", &["view", bam_s, "chr1:1000-2000"], &plugins);
    let encoded = format!("gtio+{}#dir/b%20c.bam", ngx.url("set.torrent"));
    let got = must("samtools", &["view", &encoded, "chr1:1000-2000"], &plugins);
    assert!(got == local, "percent-encoded member differs");

    // A member that is not in the torrent, or an object that is not served:
    // ENOENT, reported by samtools as such.
    let (ok, _, err) = run(
        "samtools",
        &[
            "view",
            &format!("gtio+{}#dir/missing.bam", ngx.url("set.torrent")),
        ],
        &plugins,
    );
    assert!(!ok && err.contains("No such file"), "missing member: {err}");
    let (ok, _, err) = run(
        "samtools",
        &["view", &format!("gtio+{}", ngx.url("set/dir/missing.bam"))],
        &plugins,
    );
    assert!(!ok && err.contains("No such file"), "missing object: {err}");
}

/// nginx serving `root` with an access log of status, bytes sent and the
/// Range header per request (the shared support::nginx logs nothing).
struct LoggedNginx {
    port: u16,
    log: PathBuf,
    child: std::process::Child,
    _dir: support::nginx::TempDir,
}

impl LoggedNginx {
    fn start(root: &Path) -> LoggedNginx {
        let dir = tempdir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid \"{d}/nginx.pid\";\n\
             error_log \"{d}/error.log\" warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  log_format ranges '$status $bytes_sent \"$http_range\" $uri';\n\
             access_log \"{d}/access.log\" ranges;\n  client_body_temp_path \"{d}/b\";\n\
             proxy_temp_path \"{d}/p\";\n  fastcgi_temp_path \"{d}/f\";\n  uwsgi_temp_path \"{d}/u\";\n\
             scgi_temp_path \"{d}/s\";\n  server {{ listen 127.0.0.1:{port}; root \"{}\"; }}\n}}\n",
            root.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let bin = std::env::var("GTIO_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot run nginx (scripts/install-deps.sh installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "logged nginx did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        LoggedNginx {
            port,
            log: dir.join("access.log"),
            child,
            _dir: dir,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// (status, bytes sent, Range header, path) of every request so far;
    /// the log is emptied for the next command.
    fn take(&self) -> Vec<(u16, u64, String, String)> {
        // A request cut short by the client's exit is logged when nginx notices.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        std::fs::write(&self.log, "").unwrap();
        text.lines()
            .map(|l| {
                let (status, rest) = l.split_once(' ').unwrap();
                let (bytes, rest) = rest.split_once(' ').unwrap();
                let (range, path) = rest[1..].split_once("\" ").unwrap();
                (
                    status.parse().unwrap(),
                    bytes.parse().unwrap(),
                    range.to_string(),
                    path.to_string(),
                )
            })
            .collect()
    }
}

impl Drop for LoggedNginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the plugin asks of the server, from nginx's access log: bounded
/// ranges only; a missing `.csi` costs one request (ENOENT, no retries);
/// the first query of a plain object 6 requests, none a HEAD; a region
/// after the first is at most 2 requests and a few hundred KB of a
/// 10+ MB BAM (32 KiB hFILE reads used to start the readahead on every
/// region: ~3 requests and megabytes each).
#[test]
fn plugin_requests_are_bounded_and_few() {
    if !have("samtools") {
        eprintln!("SKIPPED: samtools is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let tmp = tempdir();
    let plugins = tmp.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    build_plugin(&plugins);
    let root = tmp.join("www");
    std::fs::create_dir_all(&root).unwrap();

    // Random bases and qualities, so the BAM is large (~13 MB) against a region.
    const CHR: u64 = 2_000_000;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut sam = format!("@HD\tVN:1.6\n@SQ\tSN:chr1\tLN:{CHR}\n@SQ\tSN:chr2\tLN:{CHR}\n");
    for i in 0..100_000 {
        let chr = if i % 2 == 0 { "chr1" } else { "chr2" };
        let pos = 1 + rng.below(CHR - 100);
        let seq: String = (0..100)
            .map(|_| b"ACGT"[rng.below(4) as usize] as char)
            .collect();
        let qual: String = (0..100)
            .map(|_| (33 + rng.below(40) as u8) as char)
            .collect();
        sam.push_str(&format!(
            "r{i}\t0\t{chr}\t{pos}\t60\t100M\t*\t0\t0\t{seq}\t{qual}\n"
        ));
    }
    let sam_path = tmp.join("big.sam");
    std::fs::write(&sam_path, sam).unwrap();
    let bam = root.join("big.bam");
    let bam_s = bam.to_str().unwrap();
    must(
        "samtools",
        &["sort", "-o", bam_s, sam_path.to_str().unwrap()],
        &plugins,
    );
    must("samtools", &["index", bam_s], &plugins);
    let size = std::fs::metadata(&bam).unwrap().len();
    assert!(size > 10 << 20, "BAM is only {size} bytes");

    let ngx = LoggedNginx::start(&root);
    let url = format!("gtio+{}", ngx.url("big.bam"));
    // The first more than the readahead's tolerance (1 MiB) past the
    // header, so that its read is not taken for a sequential one (a region
    // next to the header also starts the reader's readahead: one more
    // request, counted with the regions after the first below).
    let regions = [
        "chr1:1500000-1505000",
        "chr2:700000-705000",
        "chr1:100000-105000",
        "chr2:1900000-1905000",
        "chr1:900000-905000",
    ];
    let local = must("samtools", &["view", bam_s, regions[0]], &plugins);
    assert!(!local.is_empty());
    assert!(must("samtools", &["view", &url, regions[0]], &plugins) == local);
    let first = ngx.take();
    let mut args = vec!["view", url.as_str()];
    args.extend(regions);
    let local_all = {
        let mut a = vec!["view", bam_s];
        a.extend(regions);
        must("samtools", &a, &plugins)
    };
    assert!(
        must("samtools", &args, &plugins) == local_all,
        "regions differ"
    );
    let all = ngx.take();

    for (status, _, range, path) in first.iter().chain(&all) {
        if range != "-" {
            let (a, b) = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .unwrap_or_else(|| panic!("odd range {range} for {path}"));
            assert!(!b.is_empty(), "open-ended range {range} for {path}");
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            assert!(
                b - a < 8 << 20,
                "range {range} of {path} is larger than 8 MiB"
            );
        }
        if path.ends_with(".csi") {
            assert_eq!(*status, 404, "{path}");
        }
    }
    for probe in ["/big.bam.csi", "/big.csi"] {
        let n = first.iter().filter(|r| r.3 == probe).count();
        assert!(
            n <= 1,
            "{probe} probed with {n} requests (missing index must be one ENOENT)"
        );
    }
    // The first query (header, index, one region) of a plain object: each
    // open is one ranged GET of the first block, no HEAD (docs/http.md,
    // "Opening an object"), which brings the header and a small index
    // whole. What is left is one request per index name htslib guesses
    // that is not there (.bam.csi, .csi), the BGZF EOF check (the last 28
    // bytes) and the region: 6, where a HEAD per open and a second GET for
    // the header made 8.
    assert!(
        first.iter().all(|r| r.2 != "-"),
        "an unranged request (a HEAD) in the first query: {first:?}"
    );
    let count = |path: &str| first.iter().filter(|r| r.3 == path).count();
    assert_eq!(count("/big.bam.bai"), 1, "the index: {first:?}");
    assert!(
        count("/big.bam") <= 3,
        "header, EOF check, region: {first:?}"
    );
    assert!(
        first.len() <= 6,
        "{} requests for the first query of a plain object (want <= 6): {first:?}",
        first.len()
    );
    let k = (regions.len() - 1) as u64;
    let extra_reqs = all.len() as u64 - first.len() as u64;
    let bytes = |log: &[(u16, u64, String, String)]| log.iter().map(|r| r.1).sum::<u64>();
    let extra_bytes = bytes(&all).saturating_sub(bytes(&first));
    assert!(
        extra_reqs <= 2 * k,
        "{extra_reqs} requests for {k} more regions (want <= 2 each): {all:?}"
    );
    assert!(
        extra_bytes <= k * (768 << 10),
        "{extra_bytes} bytes sent for {k} more regions (want <= 768 KiB each): {all:?}"
    );

    // Going back to a region read earlier in the process is served from the
    // engine's cache: regions 1, 2, 1 cost what 1, 2 cost.
    let (a, b) = (regions[1], regions[3]);
    let view = |rs: &[&str]| {
        let mut args = vec!["view", url.as_str()];
        args.extend(rs);
        let mut loc = vec!["view", bam_s];
        loc.extend(rs);
        assert!(must("samtools", &args, &plugins) == must("samtools", &loc, &plugins));
        ngx.take().len()
    };
    let two = view(&[a, b]);
    let back = view(&[a, b, a]);
    assert_eq!(
        back,
        two,
        "reading {a} again cost {} more requests",
        back - two
    );

    // The torrent form: the metainfo once, and htslib's index guesses
    // ("set.csi#dir/big.bam" besides "#dir/big.bam.csi") cost no request.
    let set = root.join("set/dir");
    std::fs::create_dir_all(&set).unwrap();
    std::fs::hard_link(&bam, set.join("big.bam")).unwrap();
    std::fs::hard_link(root.join("big.bam.bai"), set.join("big.bam.bai")).unwrap();
    let out = Command::new("mktorrent")
        .args(["-l", "16", "-w", &ngx.url(""), "-o"])
        .arg(root.join("set.torrent"))
        .arg(root.join("set"))
        .output()
        .expect("mktorrent");
    assert!(out.status.success(), "mktorrent failed");
    let turl = format!("gtio+{}#dir/big.bam", ngx.url("set.torrent"));
    // A region more than the readahead's tolerance (1 MiB) past the header,
    // so that its read is not taken for a sequential one.
    let local = must("samtools", &["view", bam_s, regions[0]], &plugins);
    assert!(must("samtools", &["view", &turl, regions[0]], &plugins) == local);
    let log = ngx.take();
    assert!(
        log.iter().all(|r| !r.3.ends_with(".csi")),
        "a .csi guess reached the server: {log:?}"
    );
    assert!(
        log.len() <= 5,
        "{} requests for the first query of a torrent member (want <= 5): {log:?}",
        log.len()
    );
}
