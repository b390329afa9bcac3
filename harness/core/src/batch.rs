//! What the host sends the ARM image (a batch of sequences) and what the image sends back
//! (a stream of records), shared by both sides.
//!
//! Input blob: [`BATCH_MAGIC`], then a postcard [`Batch`].
//! Output stream: records, each a tag byte, a little-endian `u32` sequence index, then:
//! - `P`: a `u32` op index: the image is about to run that op (so a hang can be located);
//! - `T`: a `u32` length and that many bytes of [`crate::trace::Trace::to_bytes`];
//! - `E`: nothing more: the batch is done.

use crate::op::{Config, Op};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Magic bytes of an input blob.
pub const BATCH_MAGIC: &[u8; 8] = b"S2BATCH1";

/// One sequence to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Its configuration.
    pub config: Config,
    /// Its ops.
    pub ops: Vec<Op>,
}

/// Sequences to run in one boot, in order.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Batch {
    /// The sequences.
    pub jobs: Vec<Job>,
}

impl Batch {
    /// The input blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::from(BATCH_MAGIC.as_slice());
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Reads an input blob.
    pub fn from_bytes(bytes: &[u8]) -> Option<Batch> {
        postcard::from_bytes(bytes.strip_prefix(BATCH_MAGIC.as_slice())?).ok()
    }
}

/// One record of the output stream.
#[allow(missing_docs)] // variant docs name the fields
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// About to run op `op` of sequence `seq`.
    Progress { seq: u32, op: u32 },
    /// The trace of sequence `seq`.
    Trace { seq: u32, bytes: &'a [u8] },
    /// The batch is done; `seq` is the number of sequences.
    End { seq: u32 },
}

impl Record<'_> {
    /// Appends the record's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Record::Progress { seq, op } => {
                out.push(b'P');
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&op.to_le_bytes());
            }
            Record::Trace { seq, bytes } => {
                out.push(b'T');
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Record::End { seq } => {
                out.push(b'E');
                out.extend_from_slice(&seq.to_le_bytes());
            }
        }
    }
}

/// The output stream as a board's UART carries it: lines of `S2:` and up to 256 bytes in
/// hex, each passed to `emit` with its newline (`stagehand diff` reads them back from a log).
pub fn board_lines(bytes: &[u8], mut emit: impl FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut line = Vec::with_capacity(256 * 2 + 4);
    for chunk in bytes.chunks(256) {
        line.clear();
        line.extend_from_slice(b"S2:");
        for b in chunk {
            line.push(HEX[usize::from(b >> 4)]);
            line.push(HEX[usize::from(b & 15)]);
        }
        line.push(b'\n');
        emit(&line);
    }
}

/// Splits an output stream into records; a truncated last record (the image died while
/// writing it) ends the iteration.
pub fn records(mut stream: &[u8]) -> impl Iterator<Item = Record<'_>> {
    core::iter::from_fn(move || {
        let (&tag, rest) = stream.split_first()?;
        let word =
            |b: &[u8], at: usize| b.get(at..at + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        let seq = word(rest, 0)?;
        let (record, used) = match tag {
            b'P' => (Record::Progress { seq, op: word(rest, 4)? }, 8),
            b'T' => {
                let len = word(rest, 4)? as usize;
                (Record::Trace { seq, bytes: rest.get(8..8 + len)? }, 8 + len)
            }
            b'E' => (Record::End { seq }, 4),
            _ => return None,
        };
        stream = &rest[used..];
        Some(record)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_records_round_trip() {
        let b = Batch {
            jobs: alloc::vec![Job { config: Config::default(), ops: alloc::vec![Op::CreateVm { vm: 1 }] }],
        };
        assert_eq!(Batch::from_bytes(&b.to_bytes()), Some(b));
        let mut out = Vec::new();
        Record::Progress { seq: 1, op: 2 }.encode(&mut out);
        Record::Trace { seq: 1, bytes: b"abc" }.encode(&mut out);
        Record::End { seq: 2 }.encode(&mut out);
        let all: Vec<_> = records(&out).collect();
        assert_eq!(
            all,
            [
                Record::Progress { seq: 1, op: 2 },
                Record::Trace { seq: 1, bytes: b"abc" },
                Record::End { seq: 2 }
            ]
        );
        // Truncated in the middle of the trace record: only the first record survives.
        assert_eq!(records(&out[..12]).count(), 1);
    }

    #[test]
    fn board_lines_are_hex_in_chunks() {
        let bytes: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut lines = Vec::new();
        board_lines(&bytes, |l| lines.push(alloc::string::String::from_utf8(l.to_vec()).unwrap()));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("S2:000102") && lines[0].len() == 3 + 512 + 1);
        assert_eq!(
            lines[1],
            alloc::format!(
                "S2:{}\n",
                (256..300u32).map(|i| alloc::format!("{:02x}", i as u8)).collect::<Vec<_>>().concat()
            )
        );
    }
}
