//! Tests of the forwarding core with in-process str0m client peers.

mod bad_input;
mod core_tests;
mod drain_tests;
mod fastpath_tests;
mod slots_tests;
mod udp_loop;
mod video_tests;
