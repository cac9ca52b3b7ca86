//! Confab signaling.
