//! What Stagehand reads and writes as text: the `.s2` sequence format ([`text`]), its
//! `expect` lines ([`expect`]) and `inert` declarations ([`inert`]), the known-findings list
//! ([`known`]), and loading any input file, `.s2`, trace or fuzzer artifact ([`files`]).

pub mod expect;
pub mod files;
pub mod inert;
pub mod known;
pub mod text;
