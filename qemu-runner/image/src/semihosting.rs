//! ARM semihosting (`svc 0x123456` in A32): exit codes, console and host files.
//!
//! Needs `-semihosting-config enable=on,target=native`. QEMU services the call without
//! taking the SVC exception, so it works from Hyp mode and clobbers only r0 (and the
//! memory the call writes).

use core::arch::asm;

const SYS_OPEN: u32 = 0x01;
const SYS_CLOSE: u32 = 0x02;
const SYS_WRITE0: u32 = 0x04;
const SYS_WRITE: u32 = 0x05;
const SYS_REMOVE: u32 = 0x0e;
const SYS_ERRNO: u32 = 0x13;
const SYS_EXIT_EXTENDED: u32 = 0x20;
/// ADP_Stopped_ApplicationExit: with SYS_EXIT_EXTENDED the subcode is the exit status.
const ADP_STOPPED_APPLICATION_EXIT: u32 = 0x20026;

/// Longest path (bytes, without the NUL) accepted by [`HostFile::create`] and [`remove`].
pub const MAX_PATH: usize = 255;

/// Issues semihosting operation `op` with parameter `arg`, returning r0.
///
/// # Safety
/// `arg` must be what `op` expects (usually a pointer to a parameter block whose
/// pointers are valid for the access `op` performs).
pub unsafe fn call(op: u32, arg: usize) -> u32 {
    let ret: u32;
    // Safe because the caller guarantees the parameter block; the SVC is intercepted by
    // the emulator. lr is declared clobbered for hosts that really take the exception.
    unsafe {
        asm!("svc 0x123456", inout("r0") op => ret, in("r1") arg, lateout("lr") _,
             options(nostack));
    }
    ret
}

/// Ends the emulation with exit status `code` (SYS_EXIT_EXTENDED, so any code works).
pub fn exit(code: u32) -> ! {
    if crate::layout::BOARD {
        // A board has no debugger to catch semihosting calls: say so on the UART and stop.
        crate::println!("stagehand: exit {code}");
        loop {
            // Safe because waiting for an interrupt that never comes has no other effect.
            unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
        }
    }
    let block = [ADP_STOPPED_APPLICATION_EXIT, code];
    // Safe because the block is the two words SYS_EXIT_EXTENDED reads.
    unsafe { call(SYS_EXIT_EXTENDED, block.as_ptr() as usize) };
    // Only reached without semihosting: nothing else can stop the machine.
    loop {
        core::hint::spin_loop();
    }
}

/// Writes `s` to the host's stdout via SYS_WRITE0 (chunks through a NUL-terminated
/// buffer; an embedded NUL ends the chunk early).
pub fn print(s: &str) {
    let mut buf = [0u8; 129];
    for chunk in s.as_bytes().chunks(buf.len() - 1) {
        buf[..chunk.len()].copy_from_slice(chunk);
        buf[chunk.len()] = 0;
        // Safe because buf is NUL-terminated and outlives the call.
        unsafe { call(SYS_WRITE0, buf.as_ptr() as usize) };
    }
}

/// A failed semihosting file operation: the host errno (SYS_ERRNO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub u32);

fn last_errno() -> HostError {
    // Safe because SYS_ERRNO takes no parameter block.
    HostError(unsafe { call(SYS_ERRNO, 0) })
}

/// Copies `path` into a NUL-terminated buffer, as SYS_OPEN and SYS_REMOVE require.
fn c_path(path: &str) -> Result<[u8; MAX_PATH + 1], HostError> {
    const ENAMETOOLONG: u32 = 36;
    let bytes = path.as_bytes();
    if bytes.len() > MAX_PATH || bytes.contains(&0) {
        return Err(HostError(ENAMETOOLONG));
    }
    let mut buf = [0u8; MAX_PATH + 1];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(buf)
}

/// Open mode index of SYS_OPEN (ISO C `fopen` modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mode {
    /// "rb"
    ReadBinary = 1,
    /// "wb": create or truncate.
    WriteBinary = 5,
    /// "ab": create or append.
    AppendBinary = 9,
}

/// A file on the host, relative paths resolving against QEMU's working directory.
/// Closed on drop.
#[derive(Debug)]
pub struct HostFile {
    handle: u32,
}

impl HostFile {
    /// Opens `path` on the host in `mode`.
    pub fn open(path: &str, mode: Mode) -> Result<Self, HostError> {
        let name = c_path(path)?;
        let block = [name.as_ptr() as u32, mode as u32, path.len() as u32];
        // Safe because the block holds a NUL-terminated name that outlives the call.
        let handle = unsafe { call(SYS_OPEN, block.as_ptr() as usize) };
        if handle == u32::MAX {
            Err(last_errno())
        } else {
            Ok(Self { handle })
        }
    }

    /// Creates (or truncates) `path` for writing.
    pub fn create(path: &str) -> Result<Self, HostError> {
        Self::open(path, Mode::WriteBinary)
    }

    /// Writes all of `data` with one SYS_WRITE.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), HostError> {
        let block = [self.handle, data.as_ptr() as u32, data.len() as u32];
        // Safe because the block describes `data`, which the host only reads.
        let not_written = unsafe { call(SYS_WRITE, block.as_ptr() as usize) };
        if not_written == 0 {
            Ok(())
        } else {
            Err(last_errno())
        }
    }

    /// Closes the file, reporting a failure that drop would ignore.
    pub fn close(self) -> Result<(), HostError> {
        let handle = self.handle;
        core::mem::forget(self);
        close_handle(handle)
    }
}

fn close_handle(handle: u32) -> Result<(), HostError> {
    let block = [handle];
    // Safe because SYS_CLOSE reads one word: the handle.
    match unsafe { call(SYS_CLOSE, block.as_ptr() as usize) } {
        0 => Ok(()),
        _ => Err(last_errno()),
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = close_handle(self.handle);
    }
}

/// Deletes `path` on the host.
pub fn remove(path: &str) -> Result<(), HostError> {
    let name = c_path(path)?;
    let block = [name.as_ptr() as u32, path.len() as u32];
    // Safe because the block holds a NUL-terminated name that outlives the call.
    match unsafe { call(SYS_REMOVE, block.as_ptr() as usize) } {
        0 => Ok(()),
        _ => Err(last_errno()),
    }
}
