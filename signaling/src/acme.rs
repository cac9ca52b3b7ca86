//! Automatic certificates (`--acme-email`): Confab orders a certificate for the domain of its
//! https `--public-url` from an ACME CA (Let's Encrypt by default), proves control with the
//! tls-alpn-01 challenge on its own HTTPS listener (so the domain's port 443 must reach
//! Confab), keeps it under `<data dir>/acme/`, and renews it 30 days before it expires.
//!
//! Until the first certificate arrives the listener serves a self-signed placeholder for the
//! domain (browsers warn); a failed order is retried every hour and logged. The account's
//! key is kept in `<data dir>/acme/account.json`, so renewals reuse the account.
//!
//! Only what can run without a CA is tested here (configuration, the placeholder, the
//! challenge certificate served to `acme-tls/1` handshakes); the conversation with a CA is
//! instant-acme's.

use crate::config::Config;
use crate::tls::{load_pair, CertStore};
use anyhow::Context;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, LetsEncrypt,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The ALPN protocol of tls-alpn-01 validations (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Renew when the certificate has less left than this.
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::days(30);
/// After a failed order.
const RETRY: Duration = Duration::from_secs(3600);
/// How often the certificate's remaining time is looked at.
const CHECK: Duration = Duration::from_secs(12 * 3600);

/// Where the certificate, its key and the account live.
pub fn dir(config: &Config) -> PathBuf {
    config.data_dir.join("acme")
}

pub fn paths(config: &Config) -> (PathBuf, PathBuf) {
    let dir = dir(config);
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The certificate store for ACME: the certificate obtained before, else a placeholder.
pub fn store(config: &Config) -> anyhow::Result<Arc<CertStore>> {
    let domain = config
        .acme_domain()
        .context("--acme-email needs --public-url https://<domain>")?;
    let (cert, key) = paths(config);
    let pair = match load_pair(&cert, &key) {
        Ok(pair) => pair,
        Err(_) => {
            tracing::info!(%domain, "no ACME certificate yet: serving a self-signed one until it arrives");
            self_signed(&domain, None)?
        }
    };
    Ok(CertStore::with_pair(&cert, &key, pair, true))
}

/// A self-signed certificate for `domain`; with `acme_digest`, the tls-alpn-01 challenge
/// certificate carrying it in the acmeIdentifier extension.
fn self_signed(domain: &str, acme_digest: Option<&[u8]>) -> anyhow::Result<CertifiedKey> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])?;
    if let Some(digest) = acme_digest {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(digest));
    }
    let cert = params.self_signed(&key)?;
    // Not `CertifiedKey::from_der`: its check parses the certificate with webpki, which refuses
    // the critical acmeIdentifier extension (only the CA's validator must understand it).
    let signing_key = crate::tls::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
}

/// The challenge certificate for `domain` and a key authorization's SHA-256 `digest`.
pub fn challenge_certificate(domain: &str, digest: &[u8]) -> anyhow::Result<CertifiedKey> {
    self_signed(domain, Some(digest))
}

/// Whether the served certificate must be (re)ordered: a self-signed placeholder, or close to
/// its end.
pub fn needs_order(store: &CertStore, now: chrono::DateTime<chrono::Utc>) -> bool {
    let current = store.current();
    let Some(leaf) = current.cert.first() else {
        return true;
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return true;
    };
    let self_signed = parsed.issuer() == parsed.subject();
    let not_after = parsed.validity().not_after.timestamp();
    self_signed || not_after - now.timestamp() < RENEW_BEFORE.num_seconds()
}

/// Keeps the certificate current until `shutdown`.
pub fn spawn(store: Arc<CertStore>, config: &Config, shutdown: CancellationToken) {
    let domain = config.acme_domain().expect("validated with the config");
    let email = config.acme_email.clone().expect("ACME on");
    let directory = config
        .acme_directory
        .clone()
        .unwrap_or_else(|| LetsEncrypt::Production.url().to_string());
    let dir = dir(config);
    tokio::spawn(async move {
        loop {
            let wait = if needs_order(&store, chrono::Utc::now()) {
                match order(&store, &domain, &email, &directory, &dir).await {
                    Ok(()) => {
                        tracing::info!(%domain, "ACME certificate obtained");
                        CHECK
                    }
                    Err(e) => {
                        store.set_challenge(None);
                        ::metrics::counter!("confab_acme_failures_total").increment(1);
                        tracing::error!(%domain, %directory, error = %format!("{e:#}"), "ACME order failed; retrying in an hour");
                        RETRY
                    }
                }
            } else {
                CHECK
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

async fn account(email: &str, directory: &str, dir: &Path) -> anyhow::Result<Account> {
    let path = dir.join("account.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let credentials: AccountCredentials =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        return Ok(Account::builder()?.from_credentials(credentials).await?);
    }
    let contact = format!("mailto:{email}");
    let (account, credentials) = Account::builder()?
        .create(
            &NewAccount {
                contact: &[&contact],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await
        .with_context(|| format!("creating an ACME account at {directory}"))?;
    write_private(&path, serde_json::to_string(&credentials)?.as_bytes())?;
    Ok(account)
}

/// Orders a certificate, answers its tls-alpn-01 challenge, stores and serves it.
async fn order(
    store: &CertStore,
    domain: &str,
    email: &str,
    directory: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let account = account(email, directory, dir).await?;
    let identifiers = [Identifier::Dns(domain.to_string())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => anyhow::bail!("authorization for {domain} is {other:?}"),
        }
        let mut challenge = authz
            .challenge(ChallengeType::TlsAlpn01)
            .context("the ACME server offers no tls-alpn-01 challenge")?;
        let digest = challenge.key_authorization().digest();
        store.set_challenge(Some(challenge_certificate(domain, digest.as_ref())?));
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&RetryPolicy::default()).await?;
    store.set_challenge(None);
    anyhow::ensure!(
        status == OrderStatus::Ready,
        "order for {domain} ended {status:?} (is port 443 of {domain} this Confab?)"
    );
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&RetryPolicy::default()).await?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    write_private(&key, key_pem.as_bytes())?;
    write_private(&cert, chain_pem.as_bytes())?;
    store.reload()
}

/// Writes a file readable only by its owner, replacing it whole (a reader never sees half).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_needs_an_order_and_a_fresh_certificate_does_not() {
        let dir = std::env::temp_dir().join(format!("confab-acme-{}", std::process::id()));
        let config = Config {
            data_dir: dir.clone(),
            public_url: Some("https://chat.example.org".into()),
            acme_email: Some("ops@example.org".into()),
            ..Config::default()
        };
        let store = store(&config).unwrap();
        assert!(needs_order(&store, chrono::Utc::now()), "placeholder");
        // A CA-issued certificate (issuer ≠ subject) with 90 days left.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["chat.example.org".into()]).unwrap();
        let now = chrono::Utc::now();
        let end = (now + chrono::TimeDelta::days(91)).date_naive();
        use chrono::Datelike;
        params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = paths(&config);
        std::fs::create_dir_all(dir.join("acme")).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        store.reload().unwrap();
        assert!(!needs_order(&store, now));
        assert!(
            needs_order(&store, now + chrono::TimeDelta::days(61)),
            "renewal due"
        );
        // Started again, the stored certificate is served at once.
        let again = super::store(&config).unwrap();
        assert!(!needs_order(&again, now));
        std::fs::remove_dir_all(&dir).ok();
    }
}
