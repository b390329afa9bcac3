//! Property tests of the two encodings: print/parse and encode/decode round-trip, and
//! decoding any bytes is total.

use harness::core::arch::Prot;
use harness::core::bytes::{Header, Pins};
use harness::core::{Layout, Op, Walker};
use harness::fuzz::codec;
use harness::text::{parse, print, Sequence};
use proptest::prelude::*;

/// Ops whose fields fit the byte format (VM and slot ids below 8, topup bounds below 48,
/// `fail_alloc` below 64); addresses are any 64-bit value, biased towards interesting ones.
fn op(full: bool) -> impl Strategy<Value = Op> {
    let (vm, slot, small, nth) = if full { (255u8, u16::MAX, 255u8, u32::MAX) } else { (7, 7, 47, 63) };
    let addr = prop_oneof![
        any::<u64>(),
        (0u64..1 << 41),
        (0u64..32, 0u64..14).prop_map(|(b, p)| [0, 0x1f_8000, 0x3fff_8000, 0x7f_ffff_8000, 1 << 39]
            [b as usize % 5]
            + p * 4096),
        (0u64..64).prop_map(|k| 0x4400_0000 + k * 4096),
    ];
    let vm = 0..=vm;
    prop_oneof![
        vm.clone().prop_map(|vm| Op::CreateVm { vm }),
        vm.clone().prop_map(|vm| Op::DestroyVm { vm }),
        (vm.clone(), 0..=slot, addr.clone(), addr.clone(), addr.clone())
            .prop_map(|(vm, slot, gpa, pages, hva)| Op::AddMemslot { vm, slot, gpa, pages, hva }),
        (vm.clone(), 0..=slot).prop_map(|(vm, slot)| Op::RemoveMemslot { vm, slot }),
        (vm.clone(), 0..=small, 0..=small).prop_map(|(vm, min, max)| Op::Topup { vm, min, max }),
        (vm.clone(), addr.clone(), addr.clone(), any::<bool>()).prop_map(|(vm, ipa, pa, writable)| Op::Map {
            vm,
            ipa,
            pa,
            writable
        }),
        (vm.clone(), addr.clone()).prop_map(|(vm, ipa)| Op::Clear { vm, ipa }),
        (vm.clone(), addr.clone(), addr.clone(), addr.clone()).prop_map(|(vm, ipa, pa, size)| Op::Ioremap {
            vm,
            ipa,
            pa,
            size
        }),
        (vm.clone(), addr.clone()).prop_map(|(vm, hva)| Op::UnmapHva { vm, hva }),
        (vm.clone(), addr.clone(), addr.clone()).prop_map(|(vm, start, end)| Op::UnmapHvaRange {
            vm,
            start,
            end
        }),
        (vm.clone(), addr.clone(), addr.clone()).prop_map(|(vm, hva, pa)| Op::SetSpteHva { vm, hva, pa }),
        vm.clone().prop_map(|vm| Op::UpdateVmid { vm }),
        vm.clone().prop_map(|vm| Op::Enter { vm }),
        (vm.clone(), addr.clone()).prop_map(|(vm, ipa)| Op::Read { vm, ipa }),
        (vm, addr, any::<u32>()).prop_map(|(vm, ipa, value)| Op::Write { vm, ipa, value }),
        (0..=nth).prop_map(|nth| Op::FailAlloc { nth }),
    ]
}

/// Range ops (offered by AArch64 targets), fields within the byte format's ranges.
fn range_op() -> impl Strategy<Value = Op> {
    let prot = prop_oneof![Just(Prot::RAM_RW), Just(Prot::RAM_RO), Just(Prot::DEVICE_RW)];
    let addr = prop_oneof![any::<u64>(), (0u64..64).prop_map(|k| 0x20_0000 + k * 4096)];
    prop_oneof![
        (0u8..8, addr.clone(), addr.clone(), addr.clone(), prot.clone())
            .prop_map(|(vm, ipa, pa, size, prot)| Op::MapRange { vm, ipa, pa, size, prot }),
        (0u8..8, addr.clone(), addr.clone()).prop_map(|(vm, ipa, size)| Op::UnmapRange { vm, ipa, size }),
        (0u8..8, addr.clone(), addr, prot).prop_map(|(vm, ipa, size, prot)| Op::ProtectRange {
            vm,
            ipa,
            size,
            prot
        }),
    ]
}

/// A configuration byte of the reference target.
fn header() -> impl Strategy<Value = Header> {
    (any::<bool>(), any::<bool>(), 1u8..=8).prop_map(|(nc, strict, vmid_bits)| Header {
        target: 0,
        walker: if nc { Walker::NonCoherent } else { Walker::Coherent },
        strict_bbm: strict,
        vmid_bits,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bytes_round_trip(h in header(), ops in proptest::collection::vec(op(false), 0..64)) {
        stagehand_cli::register();
        let l = Layout::default();
        let (back, decoded) = codec().decode(&codec().encode(&h, &ops, &l), &Pins::default(), &l);
        prop_assert_eq!(back, h);
        prop_assert_eq!(decoded, ops);
    }

    #[test]
    fn range_ops_do_not_reach_a_target_that_lacks_them(h in header(), ops in proptest::collection::vec(range_op(), 1..8)) {
        stagehand_cli::register();
        let l = Layout::default();
        let (_, decoded) = codec().decode(&codec().encode(&h, &ops, &l), &Pins::default(), &l);
        prop_assert!(decoded.is_empty(), "the reference target offers no range op: {:?}", decoded);
    }

    #[test]
    fn text_round_trip(ops in proptest::collection::vec(op(true), 0..64), bits in 1u8..=8, strict in any::<bool>()) {
        stagehand_cli::register();
        let mut seq = Sequence { config: Default::default(), expect: Default::default(), inert: Vec::new(), ops };
        seq.config.vmid_bits = bits;
        seq.config.strict_bbm = strict;
        prop_assert_eq!(parse(&print(&seq)).unwrap(), seq);
    }

    #[test]
    fn any_bytes_decode_and_reencode(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        stagehand_cli::register();
        let l = Layout::default();
        let (h, ops) = codec().decode(&data, &Pins::default(), &l);
        let target = harness::targets::info(h.target);
        prop_assert!(ops.iter().all(|op| target.offers(op)), "the decoder only produces offered ops");
        prop_assert_eq!(codec().decode(&codec().encode(&h, &ops, &l), &Pins::default(), &l), (h, ops));
    }

    #[test]
    fn the_reference_target_is_clean_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        stagehand_cli::register();
        let pins = Pins { target: Some(0), ..Pins::default() };
        let campaign = harness::fuzz::Campaign { pins, ..Default::default() };
        let (config, ops) = campaign.decode(&data);
        let exec = harness::run::run(config, &ops, false);
        // The corrected port is clean on every sequence, in every configuration.
        prop_assert!(exec.violations().is_empty(), "{config:?}: {:?}", exec.violations());
    }

    #[test]
    fn every_target_runs_any_bytes_to_a_replayable_trace(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        stagehand_cli::register();
        let campaign = harness::fuzz::Campaign::default();
        let (config, ops) = campaign.decode(&data);
        // Findings are allowed (aarch64-paging has real ones); a harness panic is not, and the
        // trace must replay to the same bytes.
        let trace = harness::run::run(config, &ops, true).trace();
        let again = harness::run::run(config, &ops, true).trace();
        prop_assert_eq!(trace.to_bytes(), again.to_bytes());
    }
}
