//! Tests of the forwarding core with in-process str0m client peers.

mod core_tests;
mod bad_input;
