//! Where the image's output stream goes: a file on the host through semihosting (QEMU,
//! `stagehand-out.bin` in QEMU's working directory), or, on a board, the UART as lines of
//! `S2:` followed by the records' bytes in hex, which `stagehand diff` reads from a log.

use crate::layout::BOARD;
use crate::semihosting::HostFile;
use alloc::vec::Vec;
use harness_core::batch::Record;

/// The name of the output file on the host.
pub const OUTPUT_FILE: &str = "stagehand-out.bin";

/// An open output stream.
pub enum Sink {
    /// Semihosting file.
    File(HostFile),
    /// Hex lines on the UART.
    Uart,
}

impl Sink {
    /// The file on QEMU, the UART on a board (or when the host refuses the file).
    pub fn open() -> Sink {
        if BOARD {
            return Sink::Uart;
        }
        match HostFile::create(OUTPUT_FILE) {
            Ok(f) => Sink::File(f),
            Err(_) => Sink::Uart,
        }
    }

    /// Writes one record, at once (so a hang can be located from what arrived).
    pub fn record(&mut self, r: &Record<'_>) {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        match self {
            Sink::File(f) => {
                let _ = f.write_all(&buf);
            }
            Sink::Uart => harness_core::batch::board_lines(&buf, crate::uart::write_bytes),
        }
    }

    /// Closes the stream.
    pub fn close(self) {
        if let Sink::File(f) = self {
            let _ = f.close();
        }
    }
}
