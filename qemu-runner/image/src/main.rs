//! The image's runner: decodes a batch of sequences (embedded, or loaded by QEMU at
//! `INPUT_BLOB`), runs each through the shared executor on the real Hyp-mode machine, and
//! streams progress and traces to the host. Exit status: 0 batch done, 4 bad input.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use harness_core::batch::{Batch, Job, Record};
use harness_core::Executor;
use stagehand_image::machine::HypMachine;
use stagehand_image::recovery::{self, Abort};
use stagehand_image::sink::Sink;
use stagehand_image::{blob, heap, println};
use target_kvm_arm_2012::KvmArm2012;

/// A batch built into the image (board images); empty for QEMU, which loads one instead.
static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/embedded.bin"));

/// Exit status for an input blob that does not decode.
const EXIT_BAD_INPUT: u32 = 4;

#[no_mangle]
extern "C" fn stagehand_main() -> u32 {
    let input = if EMBEDDED.is_empty() { blob::input().unwrap_or(&[]) } else { EMBEDDED };
    let Some(batch) = Batch::from_bytes(input) else {
        println!("stagehand: the input blob ({} bytes) is not a batch", input.len());
        return EXIT_BAD_INPUT;
    };
    if stagehand_image::layout::BOARD {
        // QEMU starts with zeroed RAM; a board does not, and the shared platform layer
        // relies on never-used pool pages reading as zero.
        HypMachine::zero_pool();
    }
    let mut sink = Sink::open();
    for (i, job) in batch.jobs.iter().enumerate() {
        let mark = heap::mark();
        run(i as u32, job, &mut sink);
        // Safe because `run` dropped everything it allocated.
        unsafe { heap::release(mark) };
    }
    sink.record(&Record::End { seq: batch.jobs.len() as u32 });
    sink.close();
    0
}

/// Runs one sequence and sends its trace. A panic or Hyp exception inside an op ends the
/// sequence the way a native panic does.
fn run(seq: u32, job: &Job, sink: &mut Sink) {
    let mut exec = Executor::new(HypMachine, KvmArm2012::default(), job.config, true);
    for (k, op) in job.ops.iter().enumerate() {
        sink.record(&Record::Progress { seq, op: k as u32 });
        let message: String = match recovery::try_run(|| {
            exec.run(op);
        }) {
            Ok(()) => continue,
            Err(Abort::Panic(m)) => String::from(m.message()),
            Err(Abort::HypException(f)) => format!("Hyp exception in the MMU code: {f:?}"),
        };
        exec.record_panic(op, message);
        break;
    }
    exec.finish();
    let bytes = exec.trace().to_bytes();
    sink.record(&Record::Trace { seq, bytes: &bytes });
}
