//! `gtio mount`: a dataset as a read-only FUSE filesystem (DESIGN.md, "The
//! mount"). The FUSE session loop answers metadata from the inode table and
//! hands reads to a worker pool, so the kernel's concurrent reads are served
//! at once and a slow piece does not stall `ls`.

pub mod daemon;
mod tree;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};
use gtio::Dataset;
use tree::{Node, Tree};

const TTL: Duration = Duration::from_secs(3600);
/// Largest kernel request asked for (`max_read`, readahead).
const MAX_READ: u32 = 1 << 20;
/// Upper bound of one handle's prefetch window.
const WINDOW_MAX: u64 = 16 << 20;
const WORKERS: usize = 8;

/// One open file's sequential-read detection: each FUSE file handle has its
/// own, so two readers of one file do not spoil each other's readahead. When
/// the engine grows per-reader state (issue 10) this becomes that reader.
struct Reader {
    next: u64,
    window: u64,
}

struct Shared {
    ds: Dataset,
    handles: Mutex<HashMap<u64, Reader>>,
}

struct Fs {
    tree: Tree,
    shared: Arc<Shared>,
    pool: crossbeam_channel::Sender<Box<dyn FnOnce() + Send>>,
    next_fh: AtomicU64,
    mtime: SystemTime,
}

impl Fs {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = match self.tree.get(ino)? {
            Node::Dir { .. } => (FileType::Directory, 0, 0o555, 2),
            Node::File { size, .. } => (FileType::RegularFile, *size, 0o444, 1),
        };
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind,
            perm,
            nlink,
            uid,
            gid,
            rdev: 0,
            blksize: MAX_READ,
            flags: 0,
        })
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        let _ = config.set_max_readahead(MAX_READ);
        let _ = config.add_capabilities(
            // FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO (fuser gates the names
            // behind its ABI features).
            fuser::consts::FUSE_ASYNC_READ | (1 << 13) | (1 << 14),
        );
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let ino = name.to_str().and_then(|n| self.tree.child(parent, n));
        match ino.and_then(|i| self.attr(i)) {
            Some(a) => reply.entry(&TTL, &a, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        if !matches!(self.tree.get(ino), Some(Node::File { .. })) {
            return reply.error(libc::EISDIR);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let reader = Reader { next: 0, window: 0 };
        self.shared.handles.lock().unwrap().insert(fh, reader);
        // FOPEN_KEEP_CACHE: the data never changes under a mount.
        reply.opened(fh, fuser::consts::FOPEN_KEEP_CACHE);
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(&Node::File {
            offset: base,
            size: fsize,
        }) = self.tree.get(ino)
        else {
            return reply.error(libc::EBADF);
        };
        let off = offset.max(0) as u64;
        let len = (size as u64).min(fsize.saturating_sub(off));
        let shared = Arc::clone(&self.shared);
        let job = move || {
            if len == 0 {
                return reply.data(&[]);
            }
            let ahead = {
                let mut hs = shared.handles.lock().unwrap();
                hs.get_mut(&fh).and_then(|r| {
                    let seq = off == r.next;
                    r.next = off + len;
                    r.window = if seq {
                        (r.window * 2).clamp(len, WINDOW_MAX)
                    } else {
                        0
                    };
                    (r.window > 0).then_some(r.window)
                })
            };
            if let Some(w) = ahead {
                let start = off + len;
                let w = w.min(fsize.saturating_sub(start));
                if w > 0 {
                    let _ = shared.ds.prefetch(base + start, w);
                }
            }
            let mut buf = vec![0u8; len as usize];
            let mut got = 0;
            while got < buf.len() {
                match shared.ds.pread(&mut buf[got..], base + off + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return reply.error(e.errno()),
                }
            }
            reply.data(&buf[..got]);
        };
        if let Err(e) = self.pool.send(Box::new(job)) {
            (e.into_inner())();
        }
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock: Option<u64>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.shared.handles.lock().unwrap().remove(&fh);
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(Node::Dir { parent, children }) = self.tree.get(ino) else {
            return reply.error(libc::ENOTDIR);
        };
        let dots = [(ino, ".".to_string()), (*parent, "..".to_string())];
        let all = dots
            .into_iter()
            .chain(children.iter().map(|(n, i)| (*i, n.clone())));
        for (k, (child, name)) in all.enumerate().skip(offset.max(0) as usize) {
            let kind = if self.tree.is_dir(child) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(child, k as i64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let Some(Node::Dir { parent, children }) = self.tree.get(ino) else {
            return reply.error(libc::ENOTDIR);
        };
        let dots = [(ino, ".".to_string()), (*parent, "..".to_string())];
        let all = dots
            .into_iter()
            .chain(children.iter().map(|(n, i)| (*i, n.clone())));
        for (k, (child, name)) in all.enumerate().skip(offset.max(0) as usize) {
            let Some(a) = self.attr(child) else { continue };
            if reply.add(child, k as i64 + 1, name, &TTL, &a, 0) {
                break;
            }
        }
        reply.ok();
    }
}

fn serve_stats(addr: &str, shared: Arc<Shared>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = [0u8; 4096];
            let _ = conn.read(&mut req);
            let s = shared.ds.engine_stats();
            let body = format!(
                "# TYPE gtio_jobs_started_total counter\ngtio_jobs_started_total {}\n\
                 # TYPE gtio_jobs_completed_total counter\ngtio_jobs_completed_total {}\n\
                 # TYPE gtio_jobs_failed_total counter\ngtio_jobs_failed_total {}\n\
                 # TYPE gtio_pieces_fetched_total counter\ngtio_pieces_fetched_total {}\n\
                 # TYPE gtio_bytes_fetched_total counter\ngtio_bytes_fetched_total {}\n\
                 # TYPE gtio_retries_total counter\ngtio_retries_total {}\n\
                 # TYPE gtio_cache_hits_total counter\ngtio_cache_hits_total {}\n",
                s.jobs_started,
                s.jobs_completed,
                s.jobs_failed,
                s.pieces_fetched,
                s.bytes_fetched,
                s.retries,
                s.cache_hits
            );
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}

/// Block SIGINT and SIGTERM in this thread and every thread started after it,
/// so that only the mount's sigwait thread takes them (and unmounts). Call it
/// before the dataset is opened: the library's threads inherit the mask.
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: plain libc signal-mask call on an initialised set.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Mount `ds` at `mountpoint` and serve it until it is unmounted
/// (`fusermount3 -u`) or SIGINT/SIGTERM arrives, which unmount it.
pub fn run(
    ds: Dataset,
    mountpoint: &Path,
    stats_addr: Option<&str>,
    ready: &mut daemon::Ready,
) -> Result<(), String> {
    let set = signal_set();
    // Files never change under a mount; without an origin date, the time of
    // mounting is the honest answer.
    let ds_mtime = ds.mtime().unwrap_or_else(SystemTime::now);
    let tree = Tree::new(
        ds.files()
            .iter()
            .map(|f| (f.name.as_str(), f.offset, f.size)),
    );
    let shared = Arc::new(Shared {
        ds,
        handles: Mutex::new(HashMap::new()),
    });
    if let Some(addr) = stats_addr {
        serve_stats(addr, Arc::clone(&shared)).map_err(|e| format!("--stats-addr {addr}: {e}"))?;
    }
    let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
    for _ in 0..WORKERS {
        let rx = rx.clone();
        std::thread::spawn(move || {
            for job in rx {
                job();
            }
        });
    }
    let fs = Fs {
        tree,
        shared,
        pool: tx,
        next_fh: AtomicU64::new(1),
        mtime: ds_mtime,
    };
    let mp = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is a valid initialised sigset.
        unsafe { libc::sigwait(&set, &mut sig) };
        // Lazy unmount: an open reader must not keep the mount (and us) alive.
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&mp)
            .status();
        // A detached mount lives on while a reader keeps a file open, and so
        // would our session loop; the mount point is already free, so end
        // here (the open readers then get ENOTCONN) unless the loop ends first.
        std::thread::sleep(Duration::from_secs(1));
        std::process::exit(0);
    });
    let options = [
        MountOption::RO,
        MountOption::FSName("gtio".into()),
        MountOption::Subtype("gtio".into()),
        MountOption::CUSTOM(format!("max_read={MAX_READ}")),
    ];
    let mut session = fuser::Session::new(fs, mountpoint, &options)
        .map_err(|e| format!("mount {}: {e}", mountpoint.display()))?;
    ready.mounted();
    session
        .run()
        .map_err(|e| format!("serving {}: {e}", mountpoint.display()))
}
