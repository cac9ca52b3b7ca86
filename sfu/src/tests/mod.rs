//! Tests of the forwarding core with in-process str0m client peers.

mod bad_input;
mod core_tests;
mod drain_tests;
mod fastpath_tests;
mod relay_tests;
mod slots_tests;
mod stream_audio_tests;
mod udp_loop;
mod video_tests;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::{ParticipantId, RoomId, UserTag};

/// The test binary's allocator: the system's, counting allocations per
/// thread (tests that the relay's packet path allocates nothing).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// Allocations (and reallocations) made by this thread so far.
fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counter is a const-initialised thread-local without a destructor, which
// neither allocates nor can be gone while the thread runs.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

// Short constructors for the ids the tests write out.

fn room_id(n: u64) -> RoomId {
    RoomId::new(n)
}

fn pid(n: u64) -> ParticipantId {
    ParticipantId::new(n)
}

fn user(n: u64) -> UserTag {
    UserTag::new(n)
}
