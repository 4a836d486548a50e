//! The built library through its generated bindings and the bindings script. One
//! integration-test binary for the crate, so CI links the dependency tree once; a file here is a
//! module and `support` is what they share.
// Test code: a failed unwrap is a failed test (the files' own allows cover only themselves).
#![allow(clippy::unwrap_used)]

mod support;

mod bindings_script;
mod python_ffi;
