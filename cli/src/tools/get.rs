//! `gtio get`: byte ranges of one or more datasets into files.
//!
//! `--range ID:START:LEN` takes bytes of dataset ID's stream and writes
//! `OUTDIR/ID/range-START:LEN`; `--file-range ID:NAME:START:LEN` takes bytes
//! of file NAME and writes `OUTDIR/ID/NAME-START:LEN` (NAME's `/`s become
//! directories). ID is the dataset's name ([`Dataset::name`]): a torrent's
//! name, or a URI's last path segment.
//!
//! Everything is checked before anything is fetched or written: every spec
//! parses, every ID and file exists, every range fits, every output name is
//! safe ([`super::paths`]) and no two specs want the same output name for
//! different bytes. Then the plan is fetched ahead of the writer: a window
//! of upcoming bytes (half the piece cache — the whole request when it fits)
//! is handed to [`Dataset::prefetch`] up front and moved along as outputs
//! are written, so the engine downloads pieces in parallel while the writer
//! copies them out in order. Ranges may overlap: a piece is downloaded once
//! (single-flight, then the cache) however many outputs need it.

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::cat::{prefetch_budget, CHUNK};
use super::input::io_message;
use super::paths::{Output, OutputName};
use super::progress::Progress;
use super::spec::{self, Spec, SpecKind};
use super::{Failure, Outcome};
use gtio::Dataset;

/// One output file: bytes `range` of dataset `dataset`'s stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub dataset: usize,
    pub range: Range<u64>,
    pub output: OutputName,
    /// The spec as given, for messages.
    pub spec: String,
}

impl Job {
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// Check every spec against the datasets and work out the output files, in
/// the order given (`--range`s, then `--file-range`s). Specs that name the
/// same bytes and output twice are written once.
pub fn plan(datasets: &[Dataset], ranges: &[String], file_ranges: &[String]) -> Outcome<Vec<Job>> {
    if ranges.is_empty() && file_ranges.is_empty() {
        return Err(Failure::usage(
            "get",
            "nothing to get: give --range ID:START:LEN or --file-range ID:NAME:START:LEN",
        ));
    }
    let ids: Vec<&str> = datasets.iter().map(Dataset::name).collect();
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(Failure::usage(
                "get",
                format!("two datasets are both named {id:?}; their ranges would be ambiguous"),
            ));
        }
    }
    let specs = ranges
        .iter()
        .map(|s| (s, SpecKind::Stream))
        .chain(file_ranges.iter().map(|s| (s, SpecKind::File)));
    let mut jobs: Vec<Job> = Vec::new();
    let mut by_output: HashMap<OutputName, usize> = HashMap::new();
    for (text, kind) in specs {
        let spec = spec::parse(text, kind).map_err(|why| {
            let opt = match kind {
                SpecKind::Stream => "--range",
                SpecKind::File => "--file-range",
            };
            Failure::usage(format!("{opt} {text}"), why)
        })?;
        let job = resolve(datasets, &ids, &spec)?;
        match by_output.get(&job.output) {
            Some(&i) if jobs[i].dataset == job.dataset && jobs[i].range == job.range => {}
            Some(&i) => {
                return Err(Failure::usage(
                    format!("{} {}", spec.option(), spec.text),
                    format!(
                        "would write {}, as {} does, with different bytes",
                        job.output.under(Path::new("")).display(),
                        jobs[i].spec
                    ),
                ))
            }
            None => {
                by_output.insert(job.output.clone(), jobs.len());
                jobs.push(job);
            }
        }
    }
    Ok(jobs)
}

fn resolve(datasets: &[Dataset], ids: &[&str], spec: &Spec) -> Outcome<Job> {
    let what = format!("{} {}", spec.option(), spec.text);
    let unknown = |id: &str| {
        Failure::usage(
            &what,
            format!(
                "no dataset named {id:?} (the datasets given are: {})",
                ids.iter()
                    .map(|i| format!("{i:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    let (index, file) = match spec.kind {
        SpecKind::Stream => {
            let i = ids
                .iter()
                .position(|id| *id == spec.target)
                .ok_or_else(|| unknown(&spec.target))?;
            (i, None)
        }
        SpecKind::File => {
            let (i, name) = spec::split_id_name(&spec.target, ids).ok_or_else(|| {
                let id = spec.target.split(':').next().unwrap_or_default();
                unknown(id)
            })?;
            (i, Some(name))
        }
    };
    let ds = &datasets[index];
    let id = ids[index];
    let (output, base, size) = match file {
        None => {
            let out = OutputName::for_range(id, spec.start, spec.len)
                .map_err(|why| Failure::usage(&what, format!("refusing output name: {why}")))?;
            (out, 0, ds.size())
        }
        Some(name) => {
            let out = OutputName::for_file_range(id, name, spec.start, spec.len)
                .map_err(|why| Failure::usage(&what, format!("refusing output name: {why}")))?;
            let f = ds.files().iter().find(|f| f.name == name).ok_or_else(|| {
                Failure::new(&what, format!("{id} has no file {name:?} (see `gtio ls`)"))
            })?;
            (out, f.offset, f.size)
        }
    };
    let end = spec.start + spec.len; // checked by spec::parse
    if end > size {
        let whole = match file {
            None => format!("{id} is {size} bytes"),
            Some(name) => format!("{name} is {size} bytes"),
        };
        return Err(Failure::new(
            &what,
            format!("bytes {}..{end} are past the end ({whole})", spec.start),
        ));
    }
    Ok(Job {
        dataset: index,
        range: base + spec.start..base + end,
        output,
        spec: what,
    })
}

/// Queue, in the background, the next `budget` bytes the writer will need
/// from job `job` at stream offset `pos` on.
fn prefetch_ahead(datasets: &[Dataset], jobs: &[Job], job: usize, pos: u64, budget: u64) {
    let mut left = budget;
    for (i, j) in jobs.iter().enumerate().skip(job) {
        if left == 0 {
            break;
        }
        let start = if i == job {
            pos.max(j.range.start)
        } else {
            j.range.start
        };
        let len = j.range.end.saturating_sub(start).min(left);
        if len > 0 {
            let _ = datasets[j.dataset].prefetch(start, len);
        }
        left -= len;
    }
}

/// Fetch and write every job under `outdir` (created if missing), calling
/// `written` with each finished file's path.
pub fn run(
    datasets: &[Dataset],
    jobs: &[Job],
    outdir: &Path,
    progress: &Progress,
    mut written: impl FnMut(&Path),
) -> Outcome {
    std::fs::create_dir_all(outdir)
        .map_err(|e| Failure::new(format!("creating {}", outdir.display()), io_message(&e)))?;
    let budget = prefetch_budget();
    // Everything that fits in the window is queued now, all at once.
    prefetch_ahead(datasets, jobs, 0, 0, budget);
    let mut buf = vec![0u8; CHUNK];
    for (i, job) in jobs.iter().enumerate() {
        let ds = &datasets[job.dataset];
        let dest: PathBuf = job.output.under(outdir);
        let shown = dest.display().to_string();
        let fail_out = |e: std::io::Error| Failure::new(format!("writing {shown}"), io_message(&e));
        let dir = job.output.make_dirs(outdir).map_err(fail_out)?;
        let mut out = Output::create(&dir, &job.output.file).map_err(fail_out)?;
        progress.set_message(job.output.under(Path::new("")).display().to_string());
        let mut pos = job.range.start;
        while pos < job.range.end {
            prefetch_ahead(datasets, jobs, i, pos, budget);
            let want = (job.range.end - pos).min(CHUNK as u64) as usize;
            let n = ds.pread(&mut buf[..want], pos).map_err(|e| {
                Failure::new(
                    format!("{}: reading {} at offset {pos}", job.spec, ds.name()),
                    e,
                )
            })?;
            if n == 0 {
                return Err(Failure::new(
                    format!("{}: reading {} at offset {pos}", job.spec, ds.name()),
                    "the dataset ended early",
                ));
            }
            out.write_all(&buf[..n]).map_err(fail_out)?;
            pos += n as u64;
            progress.inc(n as u64);
        }
        out.commit().map_err(fail_out)?;
        written(&dest);
    }
    Ok(())
}
