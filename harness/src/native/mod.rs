//! Running sequences on the host: the simulated machine ([`sim`]), the registry of the
//! program's targets ([`targets`]), native executors over them ([`run`]), a corpus file
//! checked end to end ([`check`]), the bare baseline without oracles ([`bare`]), and a
//! target's own TLB instructions trapped under qemu-user ([`trap`]), and targets that
//! build for another architecture run there ([`elsewhere`]).

pub mod bare;
pub mod check;
pub mod elsewhere;
pub mod run;
pub mod sim;
pub mod targets;
pub mod trap;
