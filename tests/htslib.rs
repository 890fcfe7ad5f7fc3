//! The htslib plugin (htslib/hfile_gtio.c) with Debian's samtools, bcftools
//! and tabix: a BAM and a bgzipped, tabix-indexed VCF made here, served by
//! nginx as plain objects and as members of a multi-file torrent with a web
//! seed. Every command's output through `gtio+http://…` must be identical to
//! the same command on the local files. Skipped (with a message) only when
//! samtools is not installed (scripts/install-deps.sh installs it).

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
