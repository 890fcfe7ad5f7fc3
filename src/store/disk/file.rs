//! One piece file: the data followed by a 40-byte trailer.
//!
//! ```text
//! data (len bytes) | "GTIOPT02" | len (u64 LE) | crc32c of data (u32 LE) | 20 zero bytes
//! ```
//!
//! The trailer comes after the data so that a load is one vectored `read`
//! straight into the piece's own buffer (an exact piece-sized buffer, as
//! the engine's pool recycles them), and so a file cut short anywhere loses
//! its trailer and fails the length check.
//! The CRC-32C is the plain-object checksum (hardware CRC, many GB/s, so a
//! store hit costs about what reading the file costs); a torrent piece is
//! checked by its SHA-1 instead, which its key is, and records no CRC.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};

use super::{Alloc, StoreKey, TorrentCheck};

pub const MAGIC: &[u8; 8] = b"GTIOPT02";
pub const TRAILER: usize = 40;
/// The largest piece the store accepts (the engine's own bound is lower).
pub const MAX_PIECE: u64 = 1 << 31;

/// The trailer recording `data`.
pub fn trailer(key: &StoreKey, data: &[u8]) -> [u8; TRAILER] {
    let mut t = [0u8; TRAILER];
    t[..8].copy_from_slice(MAGIC);
    t[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
    if let StoreKey::Object(_) = key {
        t[16..20].copy_from_slice(&crc32c::crc32c(data).to_le_bytes());
    }
    t
}

/// Write `data` and its trailer to `f` (vectored: one call in the usual case).
pub fn write_piece(f: &mut File, key: &StoreKey, data: &[u8]) -> io::Result<()> {
    let t = trailer(key, data);
    let total = data.len() + TRAILER;
    let mut done = 0;
    while done < total {
        let n = if done < data.len() {
            f.write_vectored(&[IoSlice::new(&data[done..]), IoSlice::new(&t)])?
        } else {
            f.write(&t[done - data.len()..])?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// The data of a piece file of `on_disk` bytes (from the caller's fstat),
/// read into a buffer from `alloc` (the engine's recycled piece buffers, so
/// a hit costs no fresh pages), if every check passes ([`read_verified_into`]).
pub fn read_verified(
    file: &mut File,
    on_disk: u64,
    key: &StoreKey,
    check: Option<TorrentCheck>,
    alloc: Alloc,
) -> io::Result<Vec<u8>> {
    if !(TRAILER as u64..=MAX_PIECE + TRAILER as u64).contains(&on_disk) {
        return Err(bad("length does not match the file"));
    }
    let len = (on_disk - TRAILER as u64) as usize;
    let mut buf = alloc(len);
    buf.resize(len, 0);
    read_verified_into(file, on_disk, key, check, &mut buf)?;
    Ok(buf)
}

/// Read a piece file of `on_disk` bytes (from the caller's fstat) into
/// `dest`, which must be exactly as long as its data, and check it: length,
/// trailer, and the CRC-32C (objects) or the SHA-1 of the key (torrent
/// pieces, through `check`). On an error `dest` holds garbage. This is the
/// whole of a load: the engine's path reads into a piece buffer, a reader's
/// direct hit (`DiskStore::load_into`) into its own buffer.
pub fn read_verified_into(
    file: &mut File,
    on_disk: u64,
    key: &StoreKey,
    check: Option<TorrentCheck>,
    dest: &mut [u8],
) -> io::Result<()> {
    let len = dest.len();
    if on_disk != len as u64 + TRAILER as u64 {
        return Err(bad("length does not match the file"));
    }
    let mut t = [0u8; TRAILER];
    // Data and trailer in one vectored read in the usual case.
    let mut done = 0;
    while done < on_disk as usize {
        let n = if done < len {
            file.read_vectored(&mut [IoSliceMut::new(&mut dest[done..]), IoSliceMut::new(&mut t)])?
        } else {
            file.read(&mut t[done - len..])?
        };
        if n == 0 {
            return Err(bad("the file changed while it was read"));
        }
        done += n;
    }
    if &t[..8] != MAGIC {
        return Err(bad("not a piece file"));
    }
    if u64::from_le_bytes(t[8..16].try_into().expect("8 bytes")) != len as u64 {
        return Err(bad("length does not match the file"));
    }
    let ok = match key {
        StoreKey::Object(_) => {
            crc32c::crc32c(dest) == u32::from_le_bytes(t[16..20].try_into().expect("4 bytes"))
        }
        // No way to check a torrent piece: not served (but kept).
        StoreKey::Torrent(want) => match check {
            Some(check) => check(want, dest),
            None => return Err(io::ErrorKind::Unsupported.into()),
        },
    };
    if !ok {
        return Err(bad("checksum mismatch"));
    }
    Ok(())
}
