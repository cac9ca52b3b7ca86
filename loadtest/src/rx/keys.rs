//! Learning a peer's DTLS-SRTP keys, so the fast path can decrypt what
//! str0m would otherwise decrypt.
//!
//! str0m 0.25 keeps its SRTP contexts private but takes a pluggable crypto
//! provider. Ours is aws-lc-rs's with one part replaced: every DTLS instance
//! it makes is wrapped, and the wrapper copies the keying material (which
//! str0m reads through `poll_output`) into a [`KeySlot`] the peer holds.
//!
//! Which peer a DTLS instance belongs to: str0m makes it inside
//! `RtcConfig::build`, on the calling thread, so [`build`] leaves a slot in
//! a thread-local for the wrapper to take during that call.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::{Rtc, RtcConfig};

use super::srtp::{Profile, SrtpRx};

/// Where one peer's keys land once its DTLS handshake is done. Read once,
/// off the packet path (the lock is taken a single time per peer).
#[derive(Debug, Default)]
pub struct KeySlot {
    keys: Mutex<Option<Keys>>,
}

#[derive(Debug)]
struct Keys {
    profile: Option<Profile>,
    material: Vec<u8>,
    client: bool,
}

/// What [`KeySlot::take`] found.
#[derive(Debug)]
pub enum Taken {
    /// No handshake finished yet.
    NotYet,
    /// A profile the fast path does not implement (or bad material).
    Unsupported,
    Ready(SrtpRx),
}

impl KeySlot {
    pub fn take(&self) -> Taken {
        let Some(k) = self.keys.lock().take() else {
            return Taken::NotYet;
        };
        match k.profile.map(|p| SrtpRx::new(p, &k.material, k.client)) {
            Some(Ok(rx)) => Taken::Ready(rx),
            _ => Taken::Unsupported,
        }
    }
}

thread_local! {
    static NEXT_SLOT: RefCell<Option<Arc<KeySlot>>> = const { RefCell::new(None) };
}

/// Builds `config` (which must use [`provider`]) and returns the slot its
/// DTLS instance reports keys to (`None` if str0m made no DTLS instance in
/// `build`, which would leave the peer on str0m's path).
pub fn build(config: RtcConfig, now: Instant) -> (Rtc, Option<Arc<KeySlot>>) {
    NEXT_SLOT.with(|s| *s.borrow_mut() = None);
    let rtc = config.build(now);
    (rtc, NEXT_SLOT.with(|s| s.borrow_mut().take()))
}

/// The process-wide provider (aws-lc-rs with the key-copying DTLS).
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| {
        let base = str0m::crypto::from_feature_flags();
        // str0m wants `&'static` parts; one leak per process.
        let dtls: &'static KeyCopyingDtls = Box::leak(Box::new(KeyCopyingDtls {
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
struct KeyCopyingDtls {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for KeyCopyingDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, version, mtu)?;
        let slot = Arc::new(KeySlot::default());
        NEXT_SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
        Ok(Box::new(Copying { inner, slot }))
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

#[derive(Debug)]
struct Copying {
    inner: Box<dyn DtlsInstance>,
    slot: Arc<KeySlot>,
}

impl DtlsInstance for Copying {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &out {
            let profile = match profile {
                SrtpProfile::AEAD_AES_128_GCM => Some(Profile::AeadAes128Gcm),
                SrtpProfile::AEAD_AES_256_GCM => Some(Profile::AeadAes256Gcm),
                _ => None,
            };
            *self.slot.keys.lock() = Some(Keys {
                profile,
                material: material.to_vec(),
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
