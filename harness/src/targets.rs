//! The registry of targets: a configuration's `target` field is an index into [`ALL`].
//! Adding a target means adding its adapter crate under `targets/`, a line here and a
//! variant of [`crate::run::Native`].

use harness_core::target::TargetInfo;

/// Every target, in registry order (the order is part of the trace and byte formats).
pub const ALL: &[&TargetInfo] = &[&target_kvm_arm_2012::INFO, &target_aarch64_paging::INFO];

/// The index of the target called `name`.
pub fn by_name(name: &str) -> Option<u8> {
    ALL.iter().position(|t| t.name == name).map(|i| i as u8)
}

/// The target with index `index` (the reference target when out of range).
pub fn info(index: u8) -> &'static TargetInfo {
    ALL.get(usize::from(index)).copied().unwrap_or(ALL[0])
}

/// The names, for messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|t| t.name).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn switches_fit_the_configuration() {
        for t in super::ALL {
            assert!(
                t.defects.len() <= harness_core::op::WORKAROUND_BIT,
                "{}: too many defect switches",
                t.name
            );
            assert!(
                t.workarounds.len() <= 32 - harness_core::op::WORKAROUND_BIT,
                "{}: too many workarounds",
                t.name
            );
        }
    }
}
