//! Where file bytes live: a directory under the data directory (the default, zero
//! configuration) or an S3-compatible bucket (for clusters, where every node must read what
//! any node stored). Both through `object_store`, so uploads stream in parts and downloads
//! stream out, and nothing is ever held whole in memory.
//!
//! Keys are made here from random bytes; no part of a key comes from a user.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use rand::RngCore;
use std::sync::Arc;

/// Which store to use.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// Files under this directory (created if missing).
    Local(std::path::PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// An S3-compatible bucket. Unset credentials fall back to the usual `AWS_*` environment
/// variables and instance metadata.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `http://127.0.0.1:9000` for a self-hosted server; none = AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("file not found")]
    NotFound,
    #[error("file store: {0}")]
    Backend(#[from] object_store::Error),
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
}

/// The file store (cheap to clone).
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<dyn ObjectStore>,
    /// "local" or "s3", for logs and metrics.
    kind: &'static str,
}

/// A stored object's bytes as a stream, with its total size.
pub struct Download {
    pub size: u64,
    /// The byte range being sent (inclusive start, exclusive end).
    pub range: std::ops::Range<u64>,
    pub stream: BoxStream<'static, Result<Bytes, StoreError>>,
}

/// An upload in progress: write chunks, then [`Upload::finish`] (or drop/abort to discard).
pub struct Upload {
    key: String,
    writer: WriteMultipart,
    written: u64,
}

/// Parts of 5 MiB (S3's minimum part size) and at most this many in flight per upload: memory
/// per upload stays near 10 MiB whatever the file size.
const PART_SIZE: usize = 5 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

impl FileStore {
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        match config {
            StoreConfig::Local(dir) => {
                std::fs::create_dir_all(dir)?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?
                    .with_automatic_cleanup(true);
                Ok(FileStore {
                    inner: Arc::new(fs),
                    kind: "local",
                })
            }
            StoreConfig::S3(s3) => {
                let mut b =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&s3.bucket);
                if let Some(endpoint) = &s3.endpoint {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        // Self-hosted servers (MinIO, Garage, …) use path-style addresses.
                        .with_virtual_hosted_style_request(false);
                }
                if let Some(region) = &s3.region {
                    b = b.with_region(region);
                }
                if let Some(id) = &s3.access_key_id {
                    b = b.with_access_key_id(id);
                }
                if let Some(secret) = &s3.secret_access_key {
                    b = b.with_secret_access_key(secret);
                }
                Ok(FileStore {
                    inner: Arc::new(b.build()?),
                    kind: "s3",
                })
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// A new random key under `prefix` (e.g. `attachments`).
    pub fn new_key(prefix: &str) -> String {
        let mut random = [0u8; 16];
        rand::rng().fill_bytes(&mut random);
        let hex = hex::encode(random);
        // Two levels of fan-out keep local directories small.
        format!("{prefix}/{}/{}", &hex[..2], &hex)
    }

    /// Starts writing a new object under a fresh key.
    pub async fn start_upload(&self, prefix: &str) -> Result<Upload, StoreError> {
        let key = Self::new_key(prefix);
        let upload = self.inner.put_multipart(&Path::from(key.as_str())).await?;
        Ok(Upload {
            key,
            writer: WriteMultipart::new_with_chunk_size(upload, PART_SIZE),
            written: 0,
        })
    }

    /// Stores a small object (a thumbnail, an avatar) in one request; returns its key.
    pub async fn put(&self, prefix: &str, bytes: Vec<u8>) -> Result<String, StoreError> {
        let key = Self::new_key(prefix);
        self.inner
            .put(&Path::from(key.as_str()), Bytes::from(bytes).into())
            .await?;
        Ok(key)
    }

    /// The whole object in memory (for thumbnails of images within the upload limit).
    pub async fn read_all(&self, key: &str) -> Result<Bytes, StoreError> {
        let got = self.inner.get(&Path::from(key)).await.map_err(not_found)?;
        Ok(got.bytes().await?)
    }

    /// Streams the object, or the part of it `range` asks for (an HTTP `Range`: start..end,
    /// end exclusive; `None` = all).
    pub async fn download(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Download, StoreError> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let got = self
            .inner
            .get_opts(&Path::from(key), opts)
            .await
            .map_err(not_found)?;
        let size = got.meta.size;
        let range = got.range.clone();
        let stream = got
            .into_stream()
            .map(|r| r.map_err(StoreError::from))
            .boxed();
        Ok(Download {
            size,
            range,
            stream,
        })
    }

    /// Removes an object; a missing one counts as removed.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object exists (tests and the deletion sweeper's checks).
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.inner.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn not_found(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        e => StoreError::Backend(e),
    }
}

impl Upload {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends bytes, waiting while too many parts are in flight.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.writer.write(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Completes the object; returns its key and size.
    pub async fn finish(self) -> Result<(String, u64), StoreError> {
        self.writer.finish().await?;
        Ok((self.key, self.written))
    }

    /// Discards what was written.
    pub async fn abort(self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(error = %e, key = %self.key, "aborting an upload failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_uploads_stream_in_parts_and_read_back_in_ranges() {
        let dir = std::env::temp_dir().join(format!("confab-files-{}", rand::random::<u64>()));
        let store = FileStore::open(&StoreConfig::Local(dir.clone())).unwrap();
        let data: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut up = store.start_upload("attachments").await.unwrap();
        for chunk in data.chunks(64 * 1024) {
            up.write(chunk).await.unwrap();
        }
        let (key, size) = up.finish().await.unwrap();
        assert_eq!(size, data.len() as u64);
        assert!(key.starts_with("attachments/"));
        assert_eq!(&store.read_all(&key).await.unwrap()[..], &data[..]);
        let d = store.download(&key, Some(1000..1010)).await.unwrap();
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.range, 1000..1010);
        let got: Vec<Bytes> = d.stream.map(|b| b.unwrap()).collect().await;
        assert_eq!(got.concat(), &data[1000..1010]);
        store.delete(&key).await.unwrap();
        assert!(!store.exists(&key).await.unwrap());
        assert!(matches!(
            store.read_all(&key).await,
            Err(StoreError::NotFound)
        ));
        // Deleting twice is fine.
        store.delete(&key).await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn keys_are_random_and_never_from_users() {
        let a = FileStore::new_key("attachments");
        let b = FileStore::new_key("attachments");
        assert_ne!(a, b);
        assert_eq!(a.len(), "attachments/".len() + 3 + 32);
    }
}
