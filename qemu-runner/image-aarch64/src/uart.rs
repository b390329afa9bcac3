//! PL011 UART, polled transmit only (QEMU `virt` puts it on `-nographic` stdout).

use crate::layout::UART_BASE;
use core::fmt;

const DR: usize = 0x00;
const FR: usize = 0x18;
const CR: usize = 0x30;
const FR_TXFF: u32 = 1 << 5;
const CR_UARTEN_TXE_RXE: u32 = 0x301;

fn reg(offset: usize) -> *mut u32 {
    (UART_BASE + offset) as *mut u32
}

/// Enables the UART (QEMU transmits even without this; real PL011s do not).
pub fn init() {
    // Safe because UART_BASE is the PL011's MMIO block and EL2 (or EL1) runs with its MMU
    // off, so the address is the PA.
    unsafe { reg(CR).write_volatile(CR_UARTEN_TXE_RXE) };
}

/// Sends one byte, waiting while the transmit FIFO is full.
pub fn write_byte(byte: u8) {
    // Safe because UART_BASE is the PL011's MMIO block and the MMU is off.
    unsafe {
        while reg(FR).read_volatile() & FR_TXFF != 0 {}
        reg(DR).write_volatile(u32::from(byte));
    }
}

/// Sends `bytes`, turning `\n` into `\r\n` for terminals.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            write_byte(b'\r');
        }
        write_byte(b);
    }
}

/// `core::fmt` sink for the UART.
pub struct Uart;

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}
