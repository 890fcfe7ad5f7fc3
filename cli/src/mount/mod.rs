//! `gtio mount`: a dataset as a read-only FUSE filesystem (docs/design.md, "The
//! mount"). The FUSE session loop answers metadata from the inode table and
//! hands reads to a worker pool, so the kernel's concurrent reads are served
//! at once and a slow piece does not stall `ls`.

pub mod daemon;
mod metrics;
mod tree;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};
use gtio::{Dataset, Reader};
use tree::{Node, Tree};

const TTL: Duration = Duration::from_secs(3600);
/// Largest kernel request asked for (`max_read`, readahead).
const MAX_READ: u32 = 1 << 20;
/// Threads serving reads: the kernel keeps several in flight (readahead
/// and every reading process), and a read waiting for a piece must not
/// hold up one that the cache can answer.
const WORKERS: usize = 8;

/// What every read job needs: the dataset and the open files' readers.
struct Shared {
    ds: Arc<Dataset>,
    /// One engine reader per open file (FUSE file handle), made in `open`
    /// and dropped in `release`: each open file has its own readahead
    /// window, however the kernel interleaves reads of several files.
    handles: Mutex<HashMap<u64, Arc<Reader>>>,
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
        // The kernel offers its bdi's readahead (128 KiB by default) and
        // takes at most that; ask for 1 MiB and settle for the offer
        // (`raise_readahead` lifts it afterwards where it may).
        if let Err(max) = config.set_max_readahead(MAX_READ) {
            let _ = config.set_max_readahead(max);
        }
        // Readahead requests are "background" ones; the default of 16 in
        // flight would stall several sequential readers at once.
        let _ = config.set_max_background(64);
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
        let Some(&Node::File { offset, size }) = self.tree.get(ino) else {
            return reply.error(libc::EISDIR);
        };
        let reader = match Reader::new(Arc::clone(&self.shared.ds), offset, size) {
            Ok(r) => Arc::new(r),
            Err(e) => return reply.error(e.errno()),
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.shared.handles.lock().unwrap().insert(fh, reader);
        // FOPEN_KEEP_CACHE: the data never changes under a mount.
        reply.opened(fh, fuser::consts::FOPEN_KEEP_CACHE);
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(reader) = self.shared.handles.lock().unwrap().get(&fh).cloned() else {
            return reply.error(libc::EBADF);
        };
        let job = move || read_job(&reader, offset.max(0) as u64, size as usize, reply);
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

thread_local! {
    /// A read worker's buffer, kept between reads: a fresh megabyte per
    /// read would be a fresh mapping to fault in each time.
    static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Serve one kernel read on a worker thread: a positioned read of the open
/// file's reader (which feeds its window without serialising the kernel's
/// concurrent reads), answered straight from the worker's buffer.
fn read_job(reader: &Reader, off: u64, size: usize, reply: ReplyData) {
    let len = (size as u64).min(reader.len().saturating_sub(off)) as usize;
    if len == 0 {
        return reply.data(&[]);
    }
    BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let mut got = 0;
        while got < len {
            match reader.pread(&mut buf[got..len], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return reply.error(e.errno()),
            }
        }
        reply.data(&buf[..got]);
    });
}

/// Kernel readahead of the mount, in KiB: `MAX_READ`, so a sequential
/// reader's kernel requests are as large as the mount takes.
const READAHEAD_KB: u32 = MAX_READ >> 10;

/// Raise the mount's kernel readahead from the 128 KiB the kernel gives a
/// FUSE mount to `READAHEAD_KB` (docs/mount.md, "Kernel requests"): a
/// sequential reader then costs a quarter of the round trips. Only root may
/// write the knob; anyone else keeps 128 KiB, so a failure is not an error.
/// The knob belongs to this mount's own bdi (gone with the mount), so
/// nothing else on the system changes. It must be written after the FUSE
/// INIT reply, which sets it to the smaller of the kernel's offer and ours:
/// the stat here waits for INIT, as every request does.
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let _ = std::fs::write(knob, READAHEAD_KB.to_string());
}

/// Mount `ds` at `mountpoint` and serve it until it is unmounted
/// (`fusermount3 -u`) or SIGINT/SIGTERM arrives, which unmount it.
/// `allow_other` lets other users in, with the kernel checking modes.
pub fn run(
    ds: Dataset,
    mountpoint: &Path,
    stats_addr: Option<&str>,
    allow_other: bool,
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
        ds: Arc::new(ds),
        handles: Mutex::new(HashMap::new()),
    });
    if let Some(addr) = stats_addr {
        metrics::serve(addr, Arc::clone(&shared))
            .map_err(|e| format!("--stats-addr {addr}: {e}"))?;
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
    let mut options = vec![
        MountOption::RO,
        MountOption::FSName("gtio".into()),
        MountOption::Subtype("gtio".into()),
        MountOption::CUSTOM(format!("max_read={MAX_READ}")),
    ];
    if allow_other {
        // Other users are then held to the files' modes by the kernel, not
        // let through by a filesystem that checks no credentials itself.
        options.extend([MountOption::AllowOther, MountOption::DefaultPermissions]);
    }
    let mut session = fuser::Session::new(fs, mountpoint, &options).map_err(|e| {
        let hint = if allow_other {
            " (--allow-other needs root or `user_allow_other` in /etc/fuse.conf)"
        } else {
            ""
        };
        format!("mount {}: {e}{hint}", mountpoint.display())
    })?;
    let mp = mountpoint.to_path_buf();
    std::thread::spawn(move || raise_readahead(&mp));
    ready.mounted();
    session
        .run()
        .map_err(|e| format!("serving {}: {e}", mountpoint.display()))
}
