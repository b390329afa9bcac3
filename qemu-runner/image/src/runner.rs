//! The image's runner over any target: decodes a batch of sequences (loaded by QEMU at
//! `INPUT_BLOB`, or built into the image), runs each through the shared
//! executor on the real Hyp-mode machine, and streams progress and traces to the host. Exit
//! status: 0 batch done, 4 bad input. The host sends only sequences of the image's target.
//!
//! An image over your own target is a binary crate of one line (its `.cargo/config.toml`
//! builds for `armv7a-none-eabi` and links with `-Tlink.x`):
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! stagehand_image::image_main!(my_adapter::MyStage2);
//! ```

use crate::machine::HypMachine;
use crate::recovery::{self, Abort};
use crate::sink::Sink;
use crate::{blob, heap};
use alloc::format;
use alloc::string::String;
use harness_core::batch::{Batch, Job, Record};
use harness_core::target::Target;
use harness_core::Executor;

/// Exit status for an input blob that does not decode.
pub const EXIT_BAD_INPUT: u32 = 4;

/// Runs the batch QEMU loaded (or `embedded`, when not empty: board images) with target `T`; the return value is the
/// exit status.
pub fn run_batch<T: Target + Default>(embedded: &[u8]) -> u32 {
    let input = if embedded.is_empty() { blob::input().unwrap_or(&[]) } else { embedded };
    let Some(batch) = Batch::from_bytes(input) else {
        crate::println!("stagehand: the input blob ({} bytes) is not a batch", input.len());
        return EXIT_BAD_INPUT;
    };
    if crate::layout::BOARD {
        // QEMU starts with zeroed RAM; a board does not, and the shared platform layer
        // relies on never-used pool pages reading as zero.
        HypMachine::zero_pool();
    }
    let mut sink = Sink::open();
    for (i, job) in batch.jobs.iter().enumerate() {
        let mark = heap::mark();
        run::<T>(i as u32, job, &mut sink);
        // Safe because `run` dropped everything it allocated (or abandoned it in frames a
        // recovered exception unwound past, which nothing references any more).
        unsafe { heap::release(mark) };
    }
    sink.record(&Record::End { seq: batch.jobs.len() as u32 });
    sink.close();
    0
}

/// Runs one sequence and sends its trace. A panic or Hyp exception inside an op ends the
/// sequence the way a native panic does.
fn run<T: Target + Default>(seq: u32, job: &Job, sink: &mut Sink) {
    let mut exec = Executor::new(HypMachine, T::default(), job.config, true);
    for (k, op) in job.ops.iter().enumerate() {
        sink.record(&Record::Progress { seq, op: k as u32 });
        let message: String = match recovery::try_run(|| {
            exec.run(op);
        }) {
            Ok(()) => continue,
            Err(Abort::Panic(m)) => String::from(m.message()),
            Err(Abort::HypException(f)) => format!("Hyp exception in the target's code: {f:?}"),
        };
        exec.record_panic(op, message);
        break;
    }
    exec.finish();
    let bytes = exec.trace().to_bytes();
    sink.record(&Record::Trace { seq, bytes: &bytes });
}

/// The image's entry over target `$target` (the boot code calls `stagehand_main`).
#[macro_export]
macro_rules! image_main {
    ($target:ty) => {
        #[no_mangle]
        extern "C" fn stagehand_main() -> u32 {
            $crate::runner::run_batch::<$target>($crate::blob::EMBEDDED)
        }
    };
}
