//! Settings by name: docs/design.md's "Settings" table, from the environment and
//! from `gtio_set_setting`.
//!
//! Every setting has a default, an environment variable and, for most, a
//! [`Config`] field. When the library starts, each setting takes, in order
//! of precedence: an explicit config field (a nonzero `GTIO_Config` field,
//! or the `Config` a Rust caller passes to `runtime::init`), the value set
//! by name with [`set`] (the C call `gtio_set_setting`), the environment
//! variable, the default. The environment is how the CLI, Python, the mount
//! and the htslib plugin agree on settings without passing a struct; the
//! call by name is how settings added after the first release reach
//! programs without changing `GTIO_Config`'s layout.
//!
//! Settings that size the library (cache, workers, ...) are fixed while it
//! runs: setting one then is `EBUSY`. `cred` (the credential an open uses
//! when it is given none) applies to later opens at once. `cache_dir`
//! (the persistent store, `store`) has no `GTIO_Config` field: it comes
//! only from here; so do `peers` (0 turns the swarm off) and `max_peers`.
//!
//! A bad value — in the environment or through the call — is `EINVAL`
//! naming the setting and its variable; a bad environment makes the library
//! refuse to start rather than run with a setting the user did not ask for.
//!
//! A fork child starts from the environment again (values set by name in
//! the parent are not carried over; see `fork_safe`).

use std::path::PathBuf;
use std::sync::Mutex;

use crate::config::SwarmSettings;
use crate::fork_safe::ForkSafe;
use crate::{Config, Error, Result};

/// One row of the table.
pub struct Setting {
    pub name: &'static str,
    pub var: &'static str,
    /// Read only when the library starts (false: applies at once).
    pub at_start: bool,
}

/// docs/design.md's table, in its order.
pub const SETTINGS: &[Setting] = &[
    row("cache_bytes", "GTIO_CACHE_BYTES", true),
    row("block_size", "GTIO_BLOCK_SIZE", true),
    row("workers", "GTIO_WORKERS", true),
    row("max_conns_per_host", "GTIO_MAX_CONNS_PER_HOST", true),
    row("retries", "GTIO_RETRIES", true),
    row("timeout_ms", "GTIO_TIMEOUT_MS", true),
    row("readahead_max_bytes", "GTIO_READAHEAD_MAX_BYTES", true),
    row("ca_bundle", "GTIO_CA_BUNDLE", true),
    row("cred", "GTIO_CRED", false),
    row("cache_dir", "GTIO_CACHE_DIR", true),
    row("cache_dir_bytes", "GTIO_CACHE_DIR_BYTES", true),
    row("peers", "GTIO_PEERS", true),
    row("max_peers", "GTIO_MAX_PEERS", true),
];

const fn row(name: &'static str, var: &'static str, at_start: bool) -> Setting {
    Setting {
        name,
        var,
        at_start,
    }
}

/// Settings with no `Config` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extra {
    /// The credential an open uses when it is given none.
    pub cred: Option<String>,
    pub cache_dir_bytes: u64,
    /// The swarm on (`peers` 1, the default) or off (0: web seeds only).
    pub peers: bool,
    pub max_peers: u32,
}

impl Default for Extra {
    fn default() -> Extra {
        Extra {
            cred: None,
            cache_dir_bytes: 10 << 30,
            peers: true,
            max_peers: 30,
        }
    }
}

/// Values set by name, by setting: `Some(v)` a value, `None` back to the
/// default (the environment is not consulted either).
type Overrides = Vec<(&'static str, Option<String>)>;

struct State {
    overrides: Overrides,
    /// `Extra` as of the last start (or [`set`] of a setting applied at once).
    extra: Option<Extra>,
}

/// Fresh in a fork child (see `fork_safe`).
static STATE: ForkSafe<Mutex<State>> = ForkSafe::new(|| {
    Mutex::new(State {
        overrides: Vec::new(),
        extra: None,
    })
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.get().lock().unwrap_or_else(|e| e.into_inner())
}

fn lookup(name: &str) -> Result<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        Error::invalid(format!(
            "unknown setting {name:?}; the settings are: {}",
            names.join(", ")
        ))
    })
}

fn number<T: std::str::FromStr>(s: &Setting, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| {
        Error::invalid(format!(
            "{} ({}): {value:?} is not a non-negative integer in range",
            s.name, s.var
        ))
    })
}

/// Parse `value` for setting `s` into `config`/`extra`.
fn apply(s: &Setting, value: &str, config: &mut Config, extra: &mut Extra) -> Result<()> {
    match s.name {
        "cache_bytes" => config.cache_bytes = number(s, value)?,
        "block_size" => config.block_size = number(s, value)?,
        "workers" => config.workers = number(s, value)?,
        "max_conns_per_host" => config.max_conns_per_host = number(s, value)?,
        "retries" => config.retries = number(s, value)?,
        "timeout_ms" => config.timeout_ms = number(s, value)?,
        "readahead_max_bytes" => config.readahead_max_bytes = number(s, value)?,
        "ca_bundle" => config.ca_bundle = (!value.is_empty()).then(|| PathBuf::from(value)),
        "cred" => extra.cred = (!value.is_empty()).then(|| value.to_string()),
        "cache_dir" => config.cache_dir = (!value.is_empty()).then(|| PathBuf::from(value)),
        "cache_dir_bytes" => {
            extra.cache_dir_bytes = number(s, value)?;
            config.cache_dir_bytes = extra.cache_dir_bytes;
        }
        "peers" => match number::<u32>(s, value)? {
            0 => extra.peers = false,
            1 => extra.peers = true,
            _ => {
                return Err(Error::invalid(format!(
                    "peers ({}): {value:?} is neither 0 nor 1",
                    s.var
                )))
            }
        },
        "max_peers" => extra.max_peers = number(s, value)?,
        other => return Err(Error::invalid(format!("setting {other:?} has no parser"))),
    }
    Ok(())
}

/// The settings the library starts with, `Config` defaults adjusted by the
/// environment and by values set by name (explicit config fields are the
/// caller's to lay on top).
pub fn resolved() -> Result<(Config, Extra)> {
    let overrides = state().overrides.clone();
    resolve(&overrides, |var| std::env::var(var).ok())
}

fn resolve(overrides: &Overrides, env: impl Fn(&str) -> Option<String>) -> Result<(Config, Extra)> {
    let mut config = Config::default();
    let mut extra = Extra::default();
    for s in SETTINGS {
        let value = match overrides.iter().find(|(n, _)| *n == s.name) {
            Some((_, v)) => v.clone(),
            // An empty variable (`GTIO_CACHE_BYTES= prog`) means unset, as
            // in most tools: it must not make every open fail.
            None => env(s.var).filter(|v| !v.trim().is_empty()),
        };
        if let Some(v) = value {
            apply(s, &v, &mut config, &mut extra)?;
        }
    }
    Ok((config, extra))
}

/// The library starts with `extra`: remember it for [`default_cred`].
pub fn started(extra: Extra) {
    state().extra = Some(extra);
}

/// Set setting `name` to `value` (`None`: back to its default). A setting
/// read at start is `EBUSY` while the library runs (`running`).
pub fn set(name: &str, value: Option<&str>, running: bool) -> Result<()> {
    let s = lookup(name)?;
    if let Some(v) = value {
        // Check the value now, not at the next start.
        let mut config = Config::default();
        let mut extra = Extra::default();
        apply(s, v, &mut config, &mut extra)?;
    }
    if s.at_start && running {
        return Err(Error::new(
            libc::EBUSY,
            format!(
                "{name} is fixed while gtio runs: set it before any other gtio call \
                 (or after gtio_lib_fini)"
            ),
        ));
    }
    let mut st = state();
    st.overrides.retain(|(n, _)| *n != s.name);
    st.overrides.push((s.name, value.map(str::to_string)));
    if !s.at_start {
        // Applied at once: recompute what the library uses now.
        let overrides = st.overrides.clone();
        drop(st);
        let (_, extra) = resolve(&overrides, |var| std::env::var(var).ok())?;
        state().extra = Some(extra);
    }
    Ok(())
}

/// The swarm settings the library runs with (`peers`, `max_peers`).
pub fn swarm() -> SwarmSettings {
    let known = state().extra.as_ref().map(|e| (e.peers, e.max_peers));
    let (peers, max_peers) = known.unwrap_or_else(|| {
        resolved()
            .map(|(_, e)| (e.peers, e.max_peers))
            .unwrap_or((true, 30))
    });
    SwarmSettings {
        peers,
        max_peers: max_peers.clamp(1, 200),
    }
}

/// The credential an open uses when it is given none (`cred`, `GTIO_CRED`).
pub fn default_cred() -> Option<String> {
    let known = state().extra.as_ref().map(|e| e.cred.clone());
    match known {
        Some(c) => c,
        None => resolved().ok().and_then(|(_, e)| e.cred),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
    }

    #[test]
    fn environment_sets_config_fields_and_extras() {
        let (c, e) = resolve(
            &vec![],
            env_of(&[
                ("GTIO_CACHE_BYTES", "1048576"),
                ("GTIO_WORKERS", "3"),
                ("GTIO_CA_BUNDLE", "/x.pem"),
                ("GTIO_CRED", "tok"),
                ("GTIO_MAX_PEERS", "7"),
                ("GTIO_PEERS", "0"),
                ("GTIO_CACHE_DIR", ""),
            ]),
        )
        .unwrap();
        assert_eq!((c.cache_bytes, c.workers), (1 << 20, 3));
        assert_eq!(c.ca_bundle, Some(PathBuf::from("/x.pem")));
        assert_eq!((e.cred.as_deref(), e.max_peers), (Some("tok"), 7));
        assert_eq!(c.block_size, Config::default().block_size);
    }

    #[test]
    fn a_value_set_by_name_beats_the_environment() {
        let env = env_of(&[("GTIO_RETRIES", "9"), ("GTIO_TIMEOUT_MS", "5")]);
        let o = vec![("retries", Some("2".to_string())), ("timeout_ms", None)];
        let (c, _) = resolve(&o, env).unwrap();
        assert_eq!(c.retries, 2);
        assert_eq!(
            c.timeout_ms,
            Config::default().timeout_ms,
            "reset to default"
        );
    }

    #[test]
    fn an_empty_variable_is_unset() {
        let (c, _) = resolve(
            &vec![],
            env_of(&[("GTIO_CACHE_BYTES", ""), ("GTIO_WORKERS", " ")]),
        )
        .unwrap();
        let d = Config::default();
        assert_eq!((c.cache_bytes, c.workers), (d.cache_bytes, d.workers));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = resolve(&vec![], env_of(&[("GTIO_BLOCK_SIZE", "64k")])).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("GTIO_BLOCK_SIZE"), "{e}");
        let e = resolve(&vec![], env_of(&[("GTIO_WORKERS", "-1")])).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
    }

    #[test]
    fn store_and_swarm_settings_have_no_config_field_but_apply() {
        let (c, _) = resolve(&vec![], env_of(&[("GTIO_CACHE_DIR", "/tmp/c")])).unwrap();
        assert_eq!(c.cache_dir.as_deref(), Some(std::path::Path::new("/tmp/c")));
        let (_, e) = resolve(&vec![], env_of(&[("GTIO_PEERS", "0")])).unwrap();
        assert!(!e.peers);
        let (_, e) = resolve(&vec![], env_of(&[])).unwrap();
        assert!(e.peers, "the swarm is on by default");
        let e = resolve(&vec![], env_of(&[("GTIO_PEERS", "2")])).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{e}");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = set("cache_byte", Some("1"), false).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("cache_bytes"), "{e}");
    }
}
