//! The image's runner: decodes a batch of sequences (loaded by QEMU at `INPUT_BLOB`), runs
//! each through the shared executor on the real EL2 machine with the `aarch64-paging`
//! target, and streams progress and traces to the host. Exit status: 0 batch done, 4 bad
//! input. The host sends only sequences of this image's target (`harness::qemu`).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use harness_core::batch::{Batch, Job, Record};
use harness_core::Executor;
use stagehand_image_aarch64::machine::El2Machine;
use stagehand_image_aarch64::recovery::{self, Abort};
use stagehand_image_aarch64::sink::Sink;
use stagehand_image_aarch64::{blob, heap, println};
use target_aarch64_paging::Aarch64Paging;

/// Exit status for an input blob that does not decode.
const EXIT_BAD_INPUT: u32 = 4;

#[no_mangle]
extern "C" fn stagehand_main() -> u32 {
    let input = blob::input().unwrap_or(&[]);
    let Some(batch) = Batch::from_bytes(input) else {
        println!("stagehand: the input blob ({} bytes) is not a batch", input.len());
        return EXIT_BAD_INPUT;
    };
    let mut sink = Sink::open();
    for (i, job) in batch.jobs.iter().enumerate() {
        let mark = heap::mark();
        run(i as u32, job, &mut sink);
        // Safe because `run` dropped everything it allocated (or abandoned it in frames a
        // recovered exception unwound past, which nothing references any more).
        unsafe { heap::release(mark) };
    }
    sink.record(&Record::End { seq: batch.jobs.len() as u32 });
    sink.close();
    0
}

/// Runs one sequence and sends its trace. A panic or EL2 exception inside an op ends the
/// sequence the way a native panic does.
fn run(seq: u32, job: &Job, sink: &mut Sink) {
    let mut exec = Executor::new(El2Machine::default(), Aarch64Paging::default(), job.config, true);
    for (k, op) in job.ops.iter().enumerate() {
        sink.record(&Record::Progress { seq, op: k as u32 });
        let message: String = match recovery::try_run(|| {
            exec.run(op);
        }) {
            Ok(()) => continue,
            Err(Abort::Panic(m)) => String::from(m.message()),
            Err(Abort::El2Exception(f)) => format!("EL2 exception in the target's code: {f:?}"),
        };
        exec.record_panic(op, message);
        break;
    }
    exec.finish();
    let bytes = exec.trace().to_bytes();
    sink.record(&Record::Trace { seq, bytes: &bytes });
}
