//! Learning each peer's SRTP keys through str0m's pluggable crypto provider.
//!
//! str0m 0.25 takes a `CryptoProvider` of `&'static dyn` parts. One static
//! provider wraps the aws-lc-rs one; only its DTLS factory differs: each DTLS
//! instance it creates is wrapped so that the DTLS-SRTP keying material and
//! the negotiated profile, which str0m reads with `poll_output`, are also put
//! in a [`KeySink`] the SFU holds for that peer.
//!
//! Which peer a DTLS instance belongs to: str0m creates it inside
//! `RtcConfig::build`, on the calling thread. [`build_with_sink`] installs a
//! thread-local slot around that call; the wrapper files its sink there.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::{Rtc, RtcConfig};

use super::srtp::Profile;

/// What the DTLS handshake of one peer produced.
#[derive(Debug, Clone)]
pub(crate) struct DtlsKeys {
    /// `None` for a profile the fast path does not implement.
    pub profile: Option<Profile>,
    pub material: Vec<u8>,
    /// We were the DTLS client (our send keys are the client's).
    pub client: bool,
}

/// Where the wrapper leaves a peer's keys; read once by the fast path.
#[derive(Debug, Default)]
pub(crate) struct KeySink {
    ready: AtomicBool,
    keys: Mutex<Option<DtlsKeys>>,
}

impl KeySink {
    /// Cheap check (one atomic load) before taking the lock.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn take(&self) -> Option<DtlsKeys> {
        if !self.is_ready() {
            return None;
        }
        self.keys.lock().take()
    }

    fn put(&self, keys: DtlsKeys) {
        *self.keys.lock() = Some(keys);
        self.ready.store(true, Ordering::Release);
    }
}

thread_local! {
    static PENDING: RefCell<Option<Arc<KeySink>>> = const { RefCell::new(None) };
}

/// Builds an `Rtc` from `config` (which must use [`provider`]) and returns
/// the sink its DTLS instance reports keys to.
pub(crate) fn build_with_sink(config: RtcConfig, now: Instant) -> (Rtc, Option<Arc<KeySink>>) {
    PENDING.with(|p| *p.borrow_mut() = None);
    let rtc = config.build(now);
    let sink = PENDING.with(|p| p.borrow_mut().take());
    (rtc, sink)
}

/// The process-wide wrapping provider (created once).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let base = str0m::crypto::from_feature_flags();
            let dtls: &'static SinkingDtlsProvider = Box::leak(Box::new(SinkingDtlsProvider {
                inner: base.dtls_provider,
            }));
            Arc::new(CryptoProvider {
                dtls_provider: dtls,
                ..base
            })
        })
        .clone()
}

#[derive(Debug)]
struct SinkingDtlsProvider {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for SinkingDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let sink = Arc::new(KeySink::default());
        PENDING.with(|p| *p.borrow_mut() = Some(sink.clone()));
        Ok(Box::new(SinkingDtls { inner, sink }))
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

#[derive(Debug)]
struct SinkingDtls {
    inner: Box<dyn DtlsInstance>,
    sink: Arc<KeySink>,
}

impl DtlsInstance for SinkingDtls {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(km, profile) = &out {
            let profile = match profile {
                SrtpProfile::AES128_CM_SHA1_80 => Some(Profile::Aes128CmSha1_80),
                SrtpProfile::AEAD_AES_128_GCM => Some(Profile::AeadAes128Gcm),
                SrtpProfile::AEAD_AES_256_GCM => Some(Profile::AeadAes256Gcm),
                #[allow(unreachable_patterns)]
                _ => None,
            };
            self.sink.put(DtlsKeys {
                profile,
                material: km.to_vec(),
                client: self.inner.is_active(),
            });
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}
