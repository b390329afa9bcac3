//! Where the runner's output stream goes: a file on the host through semihosting
//! (`stagehand-out.bin` in QEMU's working directory), or, when the host refuses the file, the
//! UART as `S2:` hex lines that `stagehand diff` reads back from a log.

use crate::semihosting::HostFile;
use alloc::vec::Vec;
use harness_core::batch::{board_lines, Record};

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
    /// The semihosting file, or the UART.
    pub fn open() -> Sink {
        HostFile::create(OUTPUT_FILE).map_or(Sink::Uart, Sink::File)
    }

    /// Writes one record at once (so a hang can be located from what arrived).
    pub fn record(&mut self, r: &Record<'_>) {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        match self {
            Sink::File(f) => {
                let _ = f.write_all(&buf);
            }
            Sink::Uart => board_lines(&buf, crate::uart::write_bytes),
        }
    }

    /// Closes the stream.
    pub fn close(self) {
        if let Sink::File(f) = self {
            let _ = f.close();
        }
    }
}
