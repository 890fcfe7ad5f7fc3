//! The library's process-wide state: configuration, engine, HTTP client and
//! poller, started on first use (or by `gtio_lib_init`) and stopped by
//! `gtio_lib_fini`.
//!
//! A child process after `fork()` inherits the parent's memory but none of
//! its threads. The runtime remembers the pid that started it; a call from a
//! different pid starts a fresh runtime and forgets the old one without
//! running its destructors (its threads do not exist here, joining them
//! would hang, and its sockets belong to the parent).

use std::sync::{Arc, Mutex, OnceLock};

use crate::completion::poller::{Dispatch, Poller};
use crate::engine::Engine;
use crate::fork_safe::ForkSafe;
use crate::source::http::HttpClient;
use crate::{Config, Error, Result};

pub struct Runtime {
    config: Config,
    engine: Arc<Engine>,
    http: Arc<HttpClient>,
    poller: Mutex<Option<Poller>>,
    pid: u32,
}

impl Runtime {
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn http(&self) -> &Arc<HttpClient> {
        &self.http
    }

    /// True in the process that started this runtime (false in a fork child).
    pub fn is_current_process(&self) -> bool {
        self.pid == process_id()
    }

    fn start(config: Config) -> Result<Runtime> {
        let config = config.normalized();
        let http = Arc::new(HttpClient::new(&config)?);
        let config = store_settings_from_env(config)?;
        let store = match &config.cache_dir {
            Some(dir) => Some(crate::store::DiskStore::open(dir, config.cache_dir_bytes)?),
            None => None,
        };
        let engine = Engine::start_with_store(&config, store);
        let poller = if config.poller_thread {
            let dispatch = *DISPATCH.get().ok_or_else(|| {
                Error::invalid("poller_thread needs a completion dispatcher (set by the C API)")
            })?;
            Some(Poller::start(dispatch)?)
        } else {
            None
        };
        Ok(Runtime {
            config,
            engine,
            http,
            poller: Mutex::new(poller),
            pid: process_id(),
        })
    }

    fn stop(&self) {
        if let Some(p) = self.poller.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.stop();
        }
        self.engine.shutdown();
    }
}

/// The running runtime. Fresh in a fork child (see `fork_safe`): a parent
/// thread may hold this lock while it starts or stops a runtime.
static CURRENT: ForkSafe<Mutex<Option<Arc<Runtime>>>> = ForkSafe::new(|| Mutex::new(None));

// The process id and fork tracking live in `fork_safe` (below the
// completion rings, which need them too); re-exported here for callers.
pub use crate::fork_safe::{after_fork_in_child, process_id, track_forks};

static DISPATCH: OnceLock<Dispatch> = OnceLock::new();

/// Install the function the poller thread runs completions through.
pub fn set_dispatcher(dispatch: Dispatch) {
    let _ = DISPATCH.set(dispatch);
}

fn lock() -> std::sync::MutexGuard<'static, Option<Arc<Runtime>>> {
    CURRENT.get().lock().unwrap_or_else(|e| e.into_inner())
}

/// Forget a runtime inherited through fork() without dropping it.
fn forget_if_inherited(slot: &mut Option<Arc<Runtime>>) {
    if slot.as_ref().is_some_and(|rt| !rt.is_current_process()) {
        if let Some(old) = slot.take() {
            std::mem::forget(old);
        }
    }
}

/// Start the runtime with `config`; `EBUSY` if it already runs.
pub fn init(config: Config) -> Result<()> {
    let mut slot = lock();
    forget_if_inherited(&mut slot);
    if slot.is_some() {
        return Err(Error::new(
            libc::EBUSY,
            "gtio is already initialised: call gtio_lib_init before any other call, \
             or gtio_lib_fini first",
        ));
    }
    // The settings without a Config field still come from the environment.
    let (_, extra) = crate::settings::resolved()?;
    *slot = Some(Arc::new(Runtime::start(config)?));
    crate::settings::started(extra);
    Ok(())
}

/// At process exit: wait at most `timeout` for the persistent store's writer
/// to commit what is queued. Skipped when the runtime's lock is held (exit
/// must not deadlock) or the runtime was inherited through fork().
pub fn settle_store_at_exit(timeout: std::time::Duration) {
    let rt = match CURRENT.get().try_lock() {
        Ok(slot) => slot.clone(),
        Err(_) => return,
    };
    if let Some(rt) = rt.filter(|rt| rt.is_current_process()) {
        rt.engine.store_settle(timeout);
    }
}

/// Whether a runtime runs in this process now.
pub fn is_running() -> bool {
    let mut slot = lock();
    forget_if_inherited(&mut slot);
    slot.is_some()
}

/// The running runtime, started if none runs with the defaults as the
/// environment and `settings::set` adjust them.
pub fn get() -> Result<Arc<Runtime>> {
    let mut slot = lock();
    forget_if_inherited(&mut slot);
    if let Some(rt) = slot.as_ref() {
        return Ok(Arc::clone(rt));
    }
    let (config, extra) = crate::settings::resolved()?;
    let rt = Arc::new(Runtime::start(config)?);
    crate::settings::started(extra);
    *slot = Some(Arc::clone(&rt));
    Ok(rt)
}

/// Stop the runtime: queued downloads are cancelled, threads joined. The
/// next call starts a new one. Returns false if none was running.
pub fn fini() -> bool {
    let rt = {
        let mut slot = lock();
        forget_if_inherited(&mut slot);
        slot.take()
    };
    match rt {
        Some(rt) => {
            rt.stop();
            true
        }
        None => false,
    }
}

/// `cache_dir` and `cache_dir_bytes` for a config that does not set them:
/// they have no `GTIO_Config` field, so a C caller's config gets them from
/// `gtio_set_setting` or the environment (`settings`).
fn store_settings_from_env(mut config: Config) -> Result<Config> {
    let (resolved, _) = crate::settings::resolved()?;
    if config.cache_dir.is_none() {
        config.cache_dir = resolved.cache_dir;
    }
    if config.cache_dir_bytes == Config::default().cache_dir_bytes {
        config.cache_dir_bytes = resolved.cache_dir_bytes;
    }
    Ok(config)
}
