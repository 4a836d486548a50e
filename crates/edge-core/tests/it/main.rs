//! The in-memory harness: a client `Tunn`, the edge core and a fake broker joined in memory. One
//! integration-test binary per crate (a file here is a module), so a new test file adds no link
//! of the dependency tree.

mod harness;
