//! The compact binary body of a trace: events with delta-coded addresses and folded runs of
//! page allocations and frees, LEB128 numbers, everything else as postcard. The trace wraps
//! it in deflate (see [`crate::trace`]).

use crate::arch::tlb::Tlbi;
use crate::arch::{Desc, Pa, Vmid, Vttbr};
use crate::event::Event;
use crate::trace::{Step, Trace};
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A malformed body.
#[derive(Debug)]
pub struct Malformed;

struct Out {
    buf: Vec<u8>,
    prev: u64,
}

impl Out {
    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }
    fn num(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                return self.buf.push(b);
            }
            self.buf.push(b | 0x80);
        }
    }
    /// An address as the zig-zag difference from the previous one: nearby addresses (the
    /// common case) take one or two bytes.
    fn pa(&mut self, pa: Pa) {
        let d = pa.0.wrapping_sub(self.prev) as i64;
        self.num(((d << 1) ^ (d >> 63)) as u64);
        self.prev = pa.0;
    }
    fn serde<T: Serialize>(&mut self, v: &T) {
        let buf = core::mem::take(&mut self.buf);
        // Serializing plain data into a Vec cannot fail.
        self.buf = postcard::to_extend(v, buf).unwrap_or_default();
    }
}

struct In<'a> {
    buf: &'a [u8],
    prev: u64,
}

impl In<'_> {
    fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.buf.split_first().ok_or(Malformed)?;
        self.buf = rest;
        Ok(b)
    }
    fn num(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }
    fn pa(&mut self) -> Result<Pa, Malformed> {
        let z = self.num()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        self.prev = self.prev.wrapping_add(d as u64);
        Ok(Pa(self.prev))
    }
    fn serde<T: DeserializeOwned>(&mut self) -> Result<T, Malformed> {
        let (v, rest) = postcard::take_from_bytes(self.buf).map_err(|_| Malformed)?;
        self.buf = rest;
        Ok(v)
    }
}

const ALLOC: u8 = 0;
const ALLOC_RUN: u8 = 1;
const ALLOC_FAIL: u8 = 2;
const FREE: u8 = 3;
const FREE_RUN: u8 = 4;
const GET: u8 = 5;
const PUT: u8 = 6;
const WRITE: u8 = 7;
const CLEAN: u8 = 8;
const TLBI_VMID: u8 = 9;
const TLBI_ALL: u8 = 10;
const WARN: u8 = 11;
const VTTBR: u8 = 12;
/// A write immediately cleaned (8 bytes at the same address): the common case.
const WRITE_CLEAN: u8 = 13;
const DSB: u8 = 14;
/// Any other TLB invalidation (postcard), and a VMID beyond 8 bits.
const TLBI: u8 = 15;

/// Length of the run of single-page allocations (`alloc`) or frees of consecutive pages
/// starting at `events[0]`.
fn run(events: &[Event], alloc: bool) -> usize {
    let at = |e: &Event| match (*e, alloc) {
        (Event::Alloc { pa, order: 0 }, true) | (Event::Free { pa, order: 0 }, false) => Some(pa),
        _ => None,
    };
    let Some(first) = events.first().and_then(at) else { return 0 };
    events.iter().enumerate().take_while(|(i, e)| at(e) == Some(first.add(*i as u64 * 4096))).count()
}

fn events(out: &mut Out, events: &[Event]) {
    out.num(events.len() as u64);
    let mut i = 0;
    while i < events.len() {
        let (allocs, frees) = (run(&events[i..], true), run(&events[i..], false));
        if allocs > 1 || frees > 1 {
            let (tag, n) = if allocs > 1 { (ALLOC_RUN, allocs) } else { (FREE_RUN, frees) };
            let (Event::Alloc { pa, .. } | Event::Free { pa, .. }) = events[i] else { unreachable!("a run") };
            out.byte(tag);
            out.num(n as u64);
            out.pa(pa);
            i += n;
            continue;
        }
        match events[i] {
            Event::Alloc { pa, order } => {
                out.byte(ALLOC);
                out.pa(pa);
                out.byte(order);
            }
            Event::AllocFail { order, injected } => {
                out.byte(ALLOC_FAIL);
                out.byte(order | u8::from(injected) << 7);
            }
            Event::Free { pa, order } => {
                out.byte(FREE);
                out.pa(pa);
                out.byte(order);
            }
            Event::Get { pa, count } | Event::Put { pa, count } => {
                out.byte(if matches!(events[i], Event::Get { .. }) { GET } else { PUT });
                out.pa(pa);
                out.num(u64::from(count));
            }
            Event::Write { pa, old, new } => {
                let cleaned = events.get(i + 1) == Some(&Event::Clean { pa, len: 8 });
                out.byte(if cleaned { WRITE_CLEAN } else { WRITE });
                out.pa(pa);
                out.num(old.0);
                out.num(new.0);
                if cleaned {
                    i += 1;
                }
            }
            Event::Clean { pa, len } => {
                out.byte(CLEAN);
                out.pa(pa);
                out.num(u64::from(len));
            }
            Event::Tlbi(Tlbi::Vmid(vmid)) if vmid.0 < 256 => {
                out.byte(TLBI_VMID);
                out.byte(vmid.0 as u8);
            }
            Event::Tlbi(Tlbi::All) => out.byte(TLBI_ALL),
            Event::Tlbi(t) => {
                out.byte(TLBI);
                out.serde(&t);
            }
            Event::Dsb => out.byte(DSB),
            Event::Warn { warning } => {
                out.byte(WARN);
                out.serde(&warning);
            }
            Event::Vttbr { vm, vttbr } => {
                out.byte(VTTBR);
                out.byte(vm);
                out.num(vttbr.0);
            }
        }
        i += 1;
    }
}

fn read_events(r: &mut In<'_>) -> Result<Vec<Event>, Malformed> {
    let n = r.num()? as usize;
    let mut v = Vec::with_capacity(n.min(r.buf.len()));
    while v.len() < n {
        let tag = r.byte()?;
        let e = match tag {
            ALLOC_RUN | FREE_RUN => {
                let count = r.num()? as usize;
                if count > n - v.len() {
                    return Err(Malformed);
                }
                let first = r.pa()?;
                for k in 0..count as u64 {
                    let pa = first.add(k * 4096);
                    v.push(if tag == ALLOC_RUN {
                        Event::Alloc { pa, order: 0 }
                    } else {
                        Event::Free { pa, order: 0 }
                    });
                }
                continue;
            }
            ALLOC => Event::Alloc { pa: r.pa()?, order: r.byte()? },
            ALLOC_FAIL => {
                let b = r.byte()?;
                Event::AllocFail { order: b & 0x7f, injected: b & 0x80 != 0 }
            }
            FREE => Event::Free { pa: r.pa()?, order: r.byte()? },
            GET => Event::Get { pa: r.pa()?, count: r.num()? as u32 },
            PUT => Event::Put { pa: r.pa()?, count: r.num()? as u32 },
            WRITE => Event::Write { pa: r.pa()?, old: Desc(r.num()?), new: Desc(r.num()?) },
            WRITE_CLEAN => {
                let (pa, old, new) = (r.pa()?, Desc(r.num()?), Desc(r.num()?));
                if v.len() + 2 > n {
                    return Err(Malformed);
                }
                v.push(Event::Write { pa, old, new });
                Event::Clean { pa, len: 8 }
            }
            CLEAN => Event::Clean { pa: r.pa()?, len: r.num()? as u32 },
            TLBI_VMID => Event::Tlbi(Tlbi::Vmid(Vmid(r.byte()?.into()))),
            TLBI_ALL => Event::Tlbi(Tlbi::All),
            TLBI => Event::Tlbi(r.serde()?),
            DSB => Event::Dsb,
            WARN => Event::Warn { warning: r.serde()? },
            VTTBR => Event::Vttbr { vm: r.byte()?, vttbr: Vttbr(r.num()?) },
            _ => return Err(Malformed),
        };
        v.push(e);
    }
    Ok(v)
}

/// The body of a trace.
pub fn encode(t: &Trace) -> Vec<u8> {
    let mut out = Out { buf: Vec::with_capacity(64 + t.steps.len() * 24), prev: 0 };
    out.serde(&t.config);
    out.serde(&t.target);
    out.num(t.steps.len() as u64);
    for s in &t.steps {
        out.serde(&s.op);
        out.serde(&s.result);
        events(&mut out, &s.events);
        out.serde(&s.violations);
    }
    out.buf
}

/// Reads a body written by [`encode`] (`named`), or by version 5, which named no target.
pub fn decode(body: &[u8], named: bool) -> Result<Trace, Malformed> {
    let mut r = In { buf: body, prev: 0 };
    let config: crate::op::Config = r.serde()?;
    let target: alloc::string::String = if named {
        r.serde()?
    } else {
        crate::trace::V5_TARGETS.get(usize::from(config.target)).copied().unwrap_or("kvm-arm-2012").into()
    };
    let n = r.num()? as usize;
    let mut steps = Vec::with_capacity(n.min(body.len()));
    for _ in 0..n {
        steps.push(Step {
            op: r.serde()?,
            result: r.serde()?,
            events: read_events(&mut r)?,
            violations: r.serde()?,
        });
    }
    if !r.buf.is_empty() {
        return Err(Malformed);
    }
    Ok(Trace { config, target, steps })
}
