//! `gtio`: the command-line tool. Argument parsing only; the work is done in
//! `gtio_cli::tools` (and the mount in `mount`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{CommandFactory, Parser, Subcommand};
use gtio_cli::tools::{self, cat::Selection, progress::Progress, Failure, Outcome};

mod generate;
#[cfg(feature = "mount")]
mod mount;

const EXAMPLES: &str = "\
Examples:   (on README.md's Quick start sample dataset: www/sample/ served at 127.0.0.1:8080)
  gtio serve www --addr 127.0.0.1:8080            serve ./www over HTTP (Ctrl-C stops)
  gtio create www/sample --web-seed http://127.0.0.1:8080/ -o www/sample.torrent
  gtio ls www/sample.torrent                      files, offsets and sizes
  gtio cat www/sample.torrent --file lines.txt --offset 7 --length 20
  gtio cat http://127.0.0.1:8080/sample.zip | head -c 100
  gtio get -d www/sample.torrent --range sample:0:1000 --file-range sample:reads/numbers.txt:0:10 -o out
                                                  writes out/sample/range-0:1000 and
                                                  out/sample/reads/numbers.txt-0:10

A dataset is a .torrent file, a local file, or an http://, https:// or file://
URI (a URI ending in .torrent, or served as application/x-bittorrent, is a
torrent). In `get`, ID is the dataset's name as `gtio ls` prints it: the
torrent's name, or the URI's last path segment.

Exit status: 0 on success, 1 when an operation fails, 2 for a bad command line.";

#[derive(Parser, Debug)]
#[command(
    name = "gtio",
    version,
    about = "Read byte ranges of remote datasets: HTTP(S) objects and BitTorrent torrents via web seeds",
    after_help = EXAMPLES
)]
struct Cli {
    /// No progress bar and no informational output
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

/// Options of the commands that read datasets (ls, cat, get): docs/design.md's
/// settings that the library supports, each with its environment variable.
#[derive(clap::Args, Debug, Default)]
struct Net {
    /// Credential sent as `Authorization` to the dataset's host
    /// (`Bearer TOKEN` unless it starts with a scheme word)
    #[arg(long, env = "GTIO_CRED", hide_env_values = true, value_name = "TOKEN")]
    cred: Option<String>,
    /// PEM file of extra CA certificates to trust for https://
    #[arg(long, env = "GTIO_CA_BUNDLE", value_name = "PEM")]
    ca_bundle: Option<PathBuf>,
    /// Memory piece cache bound, bytes [default: 128 MiB]
    #[arg(long, env = "GTIO_CACHE_BYTES", value_name = "BYTES")]
    cache_bytes: Option<u64>,
    /// Piece size of plain objects, bytes [default: 65536]
    #[arg(long, env = "GTIO_BLOCK_SIZE", value_name = "BYTES")]
    block_size: Option<u32>,
    /// Fetch threads [default: 24]
    #[arg(long, env = "GTIO_WORKERS", value_name = "N")]
    workers: Option<u32>,
    /// Connections per origin host [default: 16]
    #[arg(long, env = "GTIO_MAX_CONNS_PER_HOST", value_name = "N")]
    max_conns_per_host: Option<u32>,
    /// Retries of a failed request [default: 4]
    #[arg(long, env = "GTIO_RETRIES", value_name = "N")]
    retries: Option<u32>,
    /// Timeout of one request, milliseconds [default: 20000]
    #[arg(long = "timeout-ms", env = "GTIO_TIMEOUT_MS", value_name = "MS")]
    timeout_ms: Option<u32>,
    /// Readahead bound per reader, bytes (0 disables) [default: 32 MiB]
    #[arg(long, env = "GTIO_READAHEAD_MAX_BYTES", value_name = "BYTES")]
    readahead_max_bytes: Option<u64>,
    /// Keep verified pieces in this directory across runs and processes
    /// (the persistent store) [default: memory only]
    #[arg(long, env = "GTIO_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Bound of the --cache-dir store, bytes [default: 10 GiB]
    #[arg(long, env = "GTIO_CACHE_DIR_BYTES", value_name = "BYTES")]
    cache_dir_bytes: Option<u64>,
}

/// `$XDG_CACHE_HOME/gtio`, else `~/.cache/gtio` (XDG base directories).
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gtio"))
}

impl Net {
    /// Start the library with these settings (defaults for the rest).
    fn init(&self) -> Outcome {
        let d = gtio::Config::default();
        let c = gtio::Config {
            cache_bytes: self.cache_bytes.unwrap_or(d.cache_bytes),
            block_size: self.block_size.unwrap_or(d.block_size),
            workers: self.workers.unwrap_or(d.workers),
            max_conns_per_host: self.max_conns_per_host.unwrap_or(d.max_conns_per_host),
            retries: self.retries.unwrap_or(d.retries),
            timeout_ms: self.timeout_ms.unwrap_or(d.timeout_ms),
            readahead_max_bytes: self.readahead_max_bytes.unwrap_or(d.readahead_max_bytes),
            ca_bundle: self.ca_bundle.clone(),
            cache_dir: self.cache_dir.clone(),
            cache_dir_bytes: self.cache_dir_bytes.unwrap_or(d.cache_dir_bytes),
            ..d
        };
        if c == gtio::Config::default() {
            return Ok(());
        }
        gtio::runtime::init(c).map_err(|e| Failure::new("settings", e))
    }

    fn cred(&self) -> Option<&str> {
        self.cred.as_deref().filter(|c| !c.is_empty())
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a dataset as a read-only filesystem (until unmounted or SIGINT/SIGTERM)
    #[cfg(feature = "mount")]
    #[command(
        after_help = "Example:\n  gtio mount www/sample.torrent /mnt/sample   (fusermount3 -u /mnt/sample unmounts)"
    )]
    Mount {
        /// A .torrent file, a local file, or a URI
        #[arg(value_name = "TORRENT-OR-URI")]
        input: String,
        /// An existing empty directory
        mountpoint: PathBuf,
        /// Serve statistics as Prometheus text on this address
        #[arg(long, value_name = "ADDR:PORT")]
        stats_addr: Option<String>,
        /// Detach into the background once the mount is ready (exit 0 then;
        /// an error before that is printed and exits 1)
        #[arg(long)]
        daemon: bool,
        /// Let other users read the mount too (FUSE's allow_other, with the
        /// kernel checking the files' modes; a user other than root needs
        /// `user_allow_other` in /etc/fuse.conf)
        #[arg(long)]
        allow_other: bool,
        #[command(flatten)]
        net: Net,
    },
    /// List a dataset's files with their stream offsets and sizes
    #[command(
        after_help = "Examples:\n  gtio ls www/sample.torrent\n  gtio ls --json http://127.0.0.1:8080/sample.torrent"
    )]
    Ls {
        /// A .torrent file, a local file, or a URI
        #[arg(value_name = "TORRENT-OR-URI")]
        input: String,
        /// One JSON object: {"name", "size", "files": [{"name", "offset", "size"}]}
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Write a dataset's bytes (or one file's) to stdout
    #[command(
        after_help = "Examples:\n  gtio cat www/sample.torrent --file lines.txt > lines.txt\n  gtio cat http://127.0.0.1:8080/sample.zip --offset 0 --length 64 | xxd"
    )]
    Cat {
        /// A .torrent file, a local file, or a URI
        #[arg(value_name = "TORRENT-OR-URI")]
        input: String,
        /// Only this file of the dataset (its path as `gtio ls` prints it)
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
        /// Start here (bytes, relative to --file if given)
        #[arg(long, value_name = "N", default_value_t = 0)]
        offset: u64,
        /// At most this many bytes (default: to the end)
        #[arg(long, value_name = "N")]
        length: Option<u64>,
        /// At the end, print what was fetched from where on stderr
        #[arg(long)]
        stats: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Fetch byte ranges of datasets into files, in parallel
    #[command(after_help = "\
Output names: OUTDIR/ID/range-START:LEN for --range, OUTDIR/ID/NAME-START:LEN
for --file-range (NAME's '/' separators make subdirectories). Names that
would leave OUTDIR ('..', absolute paths) are refused. Options repeat and
ranges may overlap; every piece is fetched once.

Example:
  gtio get -d www/sample.torrent -d http://127.0.0.1:8080/sample.zip \\
      --range sample:0:1048576 --range sample:524288:1048576 \\
      --file-range sample:reads/numbers.txt:100:50 --range sample.zip:0:4096 -o out")]
    Get {
        /// Datasets to read from (.torrent files, local files or URIs)
        #[arg(short = 'd', long = "dataset", value_name = "TORRENT-OR-URI", required = true, num_args = 1..)]
        datasets: Vec<String>,
        /// Bytes START..START+LEN of dataset ID's stream
        #[arg(long = "range", value_name = "ID:START:LEN")]
        ranges: Vec<String>,
        /// Bytes START..START+LEN of file NAME of dataset ID
        #[arg(long = "file-range", value_name = "ID:NAME:START:LEN")]
        file_ranges: Vec<String>,
        /// Where the outputs go (created if missing)
        #[arg(
            short = 'o',
            long = "outdir",
            value_name = "OUTDIR",
            default_value = "."
        )]
        outdir: PathBuf,
        /// Do not keep pieces for a later run (by default `get` keeps them
        /// in $XDG_CACHE_HOME/gtio, so an interrupted get resumes)
        #[arg(long)]
        no_cache: bool,
        /// At the end, print what was fetched from where on stderr
        #[arg(long)]
        stats: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Make a torrent of a file or directory, with BEP 19 web seeds and trackers
    #[command(after_help = "\
For a directory DIR named NAME, a web seed URL names the directory that holds
NAME/ (files are fetched from URL/NAME/PATH); for a single file, the URL is
the file itself, or its directory when it ends in '/'.

Trackers (BEP 12): each --tracker is one tier, tried in the order given;
commas separate trackers of the same tier. The first URL is also `announce`.
Web seeds and trackers are both optional.

Examples:
  gtio create www/sample --web-seed http://127.0.0.1:8080/ -l 18 -o www/sample.torrent
  gtio create www/sample --tracker http://t1/announce,http://t2/announce \\
      --tracker udp://t3:6969 -o sample-swarm.torrent")]
    Create {
        /// The file or directory tree to hash
        path: PathBuf,
        /// A web seed URL (repeat for several; optional)
        #[arg(long = "web-seed", value_name = "URL")]
        web_seeds: Vec<String>,
        /// A tracker tier: announce URLs (http, https, udp), comma-separated
        /// (repeat for more tiers; optional)
        #[arg(long = "tracker", value_name = "URL[,URL...]")]
        trackers: Vec<String>,
        /// Piece length as a power of two, 14 (16 KiB) to 28 (256 MiB); default: by size
        #[arg(short = 'l', long = "piece-length", value_name = "LOG2",
              value_parser = clap::value_parser!(u8).range(14..=28))]
        piece_length_log2: Option<u8>,
        /// Where to write the .torrent
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Write the man pages and shell completions (used by `make install`)
    #[command(hide = true)]
    Generate {
        /// Output directory: DIR/man1/*.1 and
        /// DIR/completions/{gtio.bash,_gtio,gtio.fish}
        dir: PathBuf,
    },
    /// Serve a directory over HTTP with byte ranges (for demos and tests)
    #[command(after_help = "\
Prints the base URL on stdout (useful with port 0), runs until SIGINT/SIGTERM.

Example:
  gtio serve www --addr 127.0.0.1:8080")]
    Serve {
        /// The directory to serve
        dir: PathBuf,
        /// Address to listen on; port 0 picks a free port
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
}

fn main() {
    let cli = Cli::parse();
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "gtio: internal error: {info}");
    }));
    let code = match std::panic::catch_unwind(move || run(cli)) {
        Ok(Ok(())) => 0,
        Ok(Err(f)) => {
            let _ = writeln!(std::io::stderr(), "gtio: {f}");
            f.exit_code
        }
        Err(_) => 1,
    };
    if code == 0 {
        // Let downloads in progress finish and reach the persistent store,
        // so the next run finds every piece this one fetched.
        gtio::runtime::fini();
    }
    std::process::exit(code);
}

/// An informational line on stderr (not with --quiet).
fn note(quiet: bool, line: impl std::fmt::Display) {
    if !quiet {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// A line on stdout. A reader that went away is not an error: the line was
/// informational, and the work it reports is done either way.
fn say(out: &mut impl Write, line: impl std::fmt::Display) -> Outcome {
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if tools::is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(Failure::new("writing output", tools::input::io_message(&e))),
    }
}

fn run(cli: Cli) -> Outcome {
    let quiet = cli.quiet;
    match cli.command {
        #[cfg(feature = "mount")]
        Command::Mount {
            input,
            mountpoint,
            stats_addr,
            daemon,
            allow_other,
            net,
        } => {
            // Fork before the library starts any thread (mount/daemon.rs).
            let mut ready = if daemon {
                mount::daemon::fork_and_wait().map_err(|e| Failure::new("mount --daemon", e))?
            } else {
                mount::daemon::Ready::foreground()
            };
            // Before the library starts its threads, so they inherit the mask
            // and the mount's sigwait thread is the one that sees SIGINT/SIGTERM.
            mount::block_signals();
            let outcome = net.init().and_then(|()| {
                let ds = tools::input::open(&input, net.cred())?;
                mount::run(
                    ds,
                    &mountpoint,
                    stats_addr.as_deref(),
                    allow_other,
                    &mut ready,
                )
                .map_err(|e| Failure::new("mount", e))
            });
            if let Err(f) = &outcome {
                if ready.is_daemon() {
                    // The waiting parent prints it, once.
                    ready.failed(&f.to_string());
                    std::process::exit(f.exit_code);
                }
            }
            outcome
        }
        Command::Ls { input, json, net } => {
            net.init()?;
            let ds = tools::input::open(&input, net.cred())?;
            let mut out = tools::cat::stdout_file()?;
            match tools::ls::ls(&ds, json, &mut out) {
                Ok(()) => Ok(()),
                Err(e) if tools::is_broken_pipe(&e) => Ok(()),
                Err(e) => Err(Failure::new("writing output", tools::input::io_message(&e))),
            }
        }
        Command::Cat {
            input,
            file,
            offset,
            length,
            stats,
            net,
        } => {
            net.init()?;
            let ds = tools::input::open(&input, net.cred())?;
            let sel = Selection {
                file,
                offset,
                length,
            };
            let range = tools::cat::resolve(&ds, &sel)?;
            let len = range.end - range.start;
            let progress = Progress::new(len, !quiet && len >= 32 << 20);
            let mut out = tools::cat::stdout_file()?;
            let done = tools::cat::cat(&ds, range, &mut out, &progress);
            if stats {
                print_stats();
            }
            done
        }
        Command::Get {
            datasets,
            ranges,
            file_ranges,
            outdir,
            no_cache,
            stats,
            mut net,
        } => {
            if !no_cache && net.cache_dir.is_none() {
                net.cache_dir = default_cache_dir();
            }
            net.init()?;
            let done = get(&datasets, &ranges, &file_ranges, &outdir, net.cred(), quiet);
            if stats {
                print_stats();
            }
            done
        }
        Command::Create {
            path,
            web_seeds,
            trackers,
            piece_length_log2,
            output,
        } => {
            let created =
                tools::create::create(&path, &web_seeds, &trackers, piece_length_log2, &output)?;
            for w in &created.warnings {
                note(quiet, format_args!("gtio: warning: {w}"));
            }
            if !quiet {
                say(
                    &mut std::io::stdout(),
                    format_args!("wrote {}: {created}", output.display()),
                )?;
            }
            Ok(())
        }
        Command::Generate { dir } => {
            let written = generate::generate(Cli::command(), &dir)
                .map_err(|e| Failure::new(format!("generate {}", dir.display()), e))?;
            for path in written {
                note(quiet, format_args!("wrote {}", path.display()));
            }
            Ok(())
        }
        Command::Serve { dir, addr } => {
            let sig = tools::serve::serve(&dir, addr, |url| {
                let mut out = std::io::stdout();
                let _ = writeln!(out, "{url}");
                let _ = out.flush();
                note(
                    quiet,
                    format_args!("serving {} at {url} (Ctrl-C to stop)", dir.display()),
                );
            })?;
            note(
                quiet,
                format_args!("stopped ({})", tools::serve::signal_name(sig)),
            );
            Ok(())
        }
    }
}

/// `--stats`: one summary line of the process's statistics on stderr.
fn print_stats() {
    use gtio::engine::stats::{process_wide, SourceKind};
    let s = process_wide();
    let h = tools::human_bytes;
    let by_kind: Vec<String> = SourceKind::ALL
        .iter()
        .filter(|k| s.fetched(**k) > 0)
        .map(|k| format!("{} {}", k.name(), h(s.fetched(*k))))
        .collect();
    let from = if by_kind.is_empty() {
        String::new()
    } else {
        format!(" ({})", by_kind.join(", "))
    };
    // Connections of the swarms still open (a `cat` keeps its torrent open
    // while it prints this; a `get` has closed its own).
    let peers = match gtio::swarm::peers_connected_all() {
        0 => String::new(),
        n => format!("; peers connected {n}"),
    };
    let _ = writeln!(
        std::io::stderr(),
        "stats: delivered {}; fetched {}{from} in {} requests, {} retries, {} errors; \
         cache {} hits, {} misses; redundant {}, hash-failed {}{peers}",
        h(s.bytes_delivered),
        h(s.fetched_total()),
        s.requests,
        s.retries,
        s.errors,
        s.cache_hits,
        s.cache_misses,
        h(s.bytes_redundant),
        h(s.bytes_hash_failed),
    );
    // The persistent store's warning (a full disk), once, if there is one.
    let warning = gtio::runtime::get().ok().and_then(|rt| {
        rt.engine().store_settle(std::time::Duration::from_secs(10));
        rt.engine().gauges(None).store_warning
    });
    if let Some(w) = warning {
        let _ = writeln!(std::io::stderr(), "stats: store warning: {w}");
    }
}

fn get(
    inputs: &[String],
    ranges: &[String],
    file_ranges: &[String],
    outdir: &Path,
    cred: Option<&str>,
    quiet: bool,
) -> Outcome {
    let started = Instant::now();
    let datasets = inputs
        .iter()
        .map(|i| tools::input::open(i, cred))
        .collect::<Outcome<Vec<_>>>()?;
    let jobs = tools::get::plan(&datasets, ranges, file_ranges)?;
    let total: u64 = jobs.iter().map(|j| j.len()).sum();
    let progress = Progress::new(total, !quiet);
    // Each finished output's path on stdout. Failing to print it does not
    // stop the outputs still to be written; it is reported at the end.
    let mut stdout = std::io::stdout();
    let mut said = Ok(());
    tools::get::run(&datasets, &jobs, outdir, &progress, |path| {
        if !quiet && said.is_ok() {
            said = say(&mut stdout, path.display());
        }
    })?;
    said?;
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    let plural = if jobs.len() == 1 { "" } else { "s" };
    note(
        quiet,
        format_args!(
            "got {} file{plural} ({}) in {secs:.2} s",
            jobs.len(),
            tools::human_bytes(total)
        ),
    );
    Ok(())
}
