//! The input blob QEMU's `-device loader,file=BLOB,addr=0x47000000,force-raw=on` puts at
//! [`INPUT_BLOB`]: a little-endian u32 payload length, then the payload. Its content
//! format belongs to the executor.

use crate::layout::{INPUT_BLOB, INPUT_BLOB_END};

/// A batch built into the image by `STAGEHAND_EMBED` (board images); empty for QEMU, which
/// loads one at [`INPUT_BLOB`] instead.
pub static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embedded.bin"));

/// Largest payload that fits between [`INPUT_BLOB`] + 4 and the end of RAM.
pub const MAX_LEN: usize = INPUT_BLOB_END - INPUT_BLOB - 4;

/// The payload, or `None` if the length word exceeds [`MAX_LEN`] (garbage, no blob on a
/// board). Without `-device loader` QEMU's RAM is zero, so this is `Some(&[])`.
pub fn input() -> Option<&'static [u8]> {
    // Safe because INPUT_BLOB is aligned RAM reserved for the blob.
    let len = u32::from_le(unsafe { (INPUT_BLOB as *const u32).read_volatile() }) as usize;
    if len > MAX_LEN {
        return None;
    }
    // Safe because len <= MAX_LEN keeps the slice inside RAM reserved for the blob, which
    // nothing in the image writes.
    Some(unsafe { core::slice::from_raw_parts((INPUT_BLOB + 4) as *const u8, len) })
}
