//! `gtio cat`: bytes of a dataset (or of one of its files) to stdout.

use std::io::Write;
use std::ops::Range;

use super::progress::Progress;
use super::{is_broken_pipe, Failure, Outcome};
use gtio::Dataset;

/// Bytes per read: large, so that the output sees few big writes and the
/// engine sees whole pieces.
pub const CHUNK: usize = 4 << 20;

/// What to print: a file of the dataset (or the whole stream), from
/// `offset` (relative to that file), `length` bytes or to the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub file: Option<String>,
    pub offset: u64,
    pub length: Option<u64>,
}

/// The stream range `sel` names. An offset past the end or an unknown file
/// is an error; a length past the end stops at the end.
pub fn resolve(ds: &Dataset, sel: &Selection) -> Outcome<Range<u64>> {
    let (base, size, what) = match &sel.file {
        Some(name) => {
            let f = ds.files().iter().find(|f| &f.name == name).ok_or_else(|| {
                Failure::new(
                    format!("--file {name}"),
                    format!("no such file in {} (see `gtio ls`)", ds.name()),
                )
            })?;
            (f.offset, f.size, format!("file {name}"))
        }
        None => (0, ds.size(), format!("dataset {}", ds.name())),
    };
    if sel.offset > size {
        return Err(Failure::new(
            format!("--offset {}", sel.offset),
            format!("past the end of {what} ({size} bytes)"),
        ));
    }
    let len = sel.length.unwrap_or(u64::MAX).min(size - sel.offset);
    Ok(base + sel.offset..base + sel.offset + len)
}

/// How far ahead of the reader to prefetch: half the piece cache, so that
/// prefetched pieces are not evicted before they are read.
pub fn prefetch_budget() -> u64 {
    gtio::runtime::get()
        .map(|rt| rt.config().cache_bytes / 2)
        .unwrap_or(64 << 20)
}

/// Copy `range` of the stream to `out`. A reader that goes away (`EPIPE`,
/// as in `gtio cat x | head`) ends the copy successfully.
pub fn cat(ds: &Dataset, range: Range<u64>, out: &mut dyn Write, progress: &Progress) -> Outcome {
    let budget = prefetch_budget();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = range.start;
    while pos < range.end {
        // Keep the next `budget` bytes in flight: prefetch skips pieces
        // already cached or downloading.
        let _ = ds.prefetch(pos, budget.min(range.end - pos));
        let want = (range.end - pos).min(CHUNK as u64) as usize;
        let n = ds
            .pread(&mut buf[..want], pos)
            .map_err(|e| Failure::new(format!("reading {} at offset {pos}", ds.name()), e))?;
        if n == 0 {
            return Err(Failure::new(
                format!("reading {} at offset {pos}", ds.name()),
                "the dataset ended early",
            ));
        }
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            Err(e) => return Err(Failure::new("writing output", super::input::io_message(&e))),
        }
        pos += n as u64;
        progress.inc(n as u64);
    }
    match out.flush() {
        Ok(()) => Ok(()),
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(Failure::new("writing output", super::input::io_message(&e))),
    }
}

/// Standard output as an unbuffered file: our writes are already large, and
/// `Stdout`'s line buffering would split them at newlines.
pub fn stdout_file() -> Outcome<std::fs::File> {
    use std::os::fd::AsFd;
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|e| Failure::new("stdout", super::input::io_message(&e)))
}
