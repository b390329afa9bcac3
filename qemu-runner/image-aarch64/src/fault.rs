//! Fault status codes (ESR ISS DFSC/IFSC, VMSAv8-64) decoded into class and level.

/// The class of a stage-2 fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// 0b0001LL: no valid descriptor (or the IPA is outside the configured input range).
    Translation,
    /// 0b0010LL: a leaf with AF = 0.
    AccessFlag,
    /// 0b0011LL: S2AP / XN forbid the access.
    Permission,
    /// 0b0000LL address size, external aborts, alignment, TLB conflict, ...
    Other,
}

/// Splits a fault status code into class and lookup level (the low two bits; 0 for
/// [`FaultClass::Other`] codes that have no level).
pub fn decode_fsc(fsc: u64) -> (FaultClass, u8) {
    let level = (fsc & 3) as u8;
    match fsc & 0x3f {
        0b00_0100..=0b00_0111 => (FaultClass::Translation, level),
        0b00_1000..=0b00_1011 => (FaultClass::AccessFlag, level),
        0b00_1100..=0b00_1111 => (FaultClass::Permission, level),
        0b00_0000..=0b00_0011 | 0b01_0100..=0b01_0111 => (FaultClass::Other, level),
        _ => (FaultClass::Other, 0),
    }
}
