//! Statistics as JSON (`gtio_stats_json`).

use std::ffi::c_char;

use super::types::{GTIO_Error, GTIO};
use super::{ffi_guard, registry};
use crate::engine::stats;
use crate::{runtime, Error};

/// Write a NUL-terminated JSON object of statistics into `buf` and return
/// its length without the NUL, or -1 with `*err`.
///
/// With `gtio` a handle, the object describes that dataset; with `gtio`
/// NULL, the whole process (every dataset opened so far, open or closed).
/// Keys: `cache_hits`, `cache_misses`, `bytes_delivered`, `bytes_fetched`
/// (an object by source kind: `http`, `webseed`, `peer`, `store`, `file`),
/// `bytes_redundant`, `bytes_hash_failed`, `requests`, `retries`, `errors`,
/// `downloads_failed`, `downloads_active`, `downloads` (live and recently
/// finished downloads with their `state`), `peers_connected`,
/// `cache_bytes_used` and `store_bytes_used` (process-wide: one cache serves
/// every dataset), and the latency histograms `first_byte_us` and `read_us`
/// (bucket upper bound in µs, `"+Inf"` for the rest → count).
///
/// Like `snprintf`: when `len` is too small for the object and its NUL,
/// nothing is written and the length needed (without the NUL) is returned;
/// `buf` may be NULL when `len` is 0, to ask for the length. `buf` must be
/// valid for `len` bytes otherwise. Never blocks; thread-safe.
#[no_mangle]
pub extern "C" fn gtio_stats_json(
    gtio: *mut GTIO,
    buf: *mut c_char,
    len: usize,
    err: *mut GTIO_Error,
) -> i64 {
    ffi_guard!("gtio_stats_json", err, -1, {
        if buf.is_null() && len > 0 {
            return Err(Error::invalid("buf is NULL but len is not 0"));
        }
        let json = if gtio.is_null() {
            let rt = runtime::get()?;
            let mut gauges = rt.engine().gauges(None);
            gauges.peers_connected = crate::swarm::peers_connected_all();
            stats::to_json(&stats::process_wide(), &gauges)
        } else {
            registry::dataset(gtio)?.stats_json()
        };
        let n = json.len();
        if n < len {
            // SAFETY: `buf` is valid for `len` > n bytes (the caller's
            // contract; checked non-NULL above since len > 0).
            unsafe {
                std::ptr::copy_nonoverlapping(json.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        Ok(n as i64)
    })
}
