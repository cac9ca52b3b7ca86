//! Confab's files: where uploaded bytes live (a local directory or an S3-compatible bucket),
//! what they are (sniffed from the bytes, never from the client), scrubbing of location and
//! other metadata from images while they stream in, and image thumbnails.
//!
//! Knows nothing of HTTP or SQL: the chat crate records what each stored key is, the signaling
//! crate streams requests through [`scrub::Scrubber`] into a [`store::FileStore`].

pub mod images;
pub mod scrub;
pub mod sniff;
pub mod store;

pub use sniff::{sniff, FileKind, Sniffed};
pub use store::{FileStore, StoreConfig, StoreError};
