//! A write buffer that gives its memory back: frames written between two flushes are
//! gathered into one `write` (a burst of dispatches costs one syscall, not one each), and once
//! a flush has sent them the buffer is released unless it is small.
//!
//! Written by hand because tokio's `BufWriter` (and tungstenite's own frame buffer) keep their
//! largest size for the connection's life: tens of thousands of idle gateway connections would
//! each hold the memory of their busiest moment.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are written without waiting for a flush.
const GATHER: usize = 16 * 1024;
/// Capacity kept after a flush; a larger buffer is released.
const KEEP: usize = 512;

pub struct ShrinkingWriter<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` the inner stream has taken.
    written: usize,
}

impl<S> ShrinkingWriter<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<S: AsyncWrite + Unpin> ShrinkingWriter<S> {
    /// Writes out everything gathered, then releases a large buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ShrinkingWriter<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > GATHER {
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= GATHER {
            // Nothing gathered (drained above) and too large to gather: straight through.
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ShrinkingWriter<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn gathers_until_flushed_then_gives_the_memory_back() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = ShrinkingWriter::new(a);
        for i in 0..10u8 {
            w.write_all(&[i; 1000]).await.unwrap();
        }
        // Gathered, not yet written: the peer has nothing.
        let mut probe = [0u8; 1];
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut probe))
                .await
                .is_err()
        );
        assert!(w.capacity() >= 10_000);
        w.flush().await.unwrap();
        assert_eq!(w.capacity(), 0, "a flushed burst leaves no buffer behind");
        let mut got = vec![0u8; 10_000];
        b.read_exact(&mut got).await.unwrap();
        for (i, chunk) in got.chunks(1000).enumerate() {
            assert!(chunk.iter().all(|&x| x == i as u8), "in order, whole");
        }
    }

    #[tokio::test]
    async fn a_slow_reader_gets_everything_in_order() {
        // A pipe far smaller than what is written: writes wait for the reader.
        let (a, mut b) = tokio::io::duplex(100);
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let expect = sent.clone();
        let writer = tokio::spawn(async move {
            let mut w = ShrinkingWriter::new(a);
            for chunk in sent.chunks(777) {
                w.write_all(chunk).await.unwrap();
            }
            w.write_all(&[7u8; GATHER + 5]).await.unwrap();
            w.flush().await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(&got[..expect.len()], &expect[..]);
        assert_eq!(got.len(), expect.len() + GATHER + 5);
        assert!(got[expect.len()..].iter().all(|&x| x == 7));
    }
}
