//! The built `grantwire-edge` binary. One integration-test binary per crate (a file here is a
//! module), so a new test file adds no link of the dependency tree.

mod doctor;
mod run_flags;
