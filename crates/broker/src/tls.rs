//! The broker's TLS identity: an operator-supplied certificate, a self-signed one made on first
//! start and kept in the data directory, or certificates from an ACME CA ([`crate::acme`]).
//! Clients and edges pin the SHA-256 fingerprint of the certificate (of its key with ACME, which
//! outlives renewals), so the names it carries matter little to them.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::error::{Error, Result};

pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";
pub const FINGERPRINT_FILE: &str = "tls-cert.sha256";

/// Where the listener's certificate comes from, as far as a friend's browser is concerned: the
/// invitation page tells the admin what the friend will see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// Made by the broker itself: browsers warn, and only the fingerprint tells it apart.
    SelfSigned { fingerprint: String },
    /// From an ACME CA for `domain`: browsers trust it at that name.
    Acme { domain: String },
    /// Given with `--tls-cert`: trusted by a browser if a CA it trusts signed it.
    Operator,
}

/// A loaded server identity.
pub struct Identity {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate's DER, 64 lowercase hex digits.
    pub fingerprint: String,
}

/// Loads `cert`/`key` if given, else the self-signed pair in `data_dir` (made if missing), and
/// writes the fingerprint file.
pub fn load_or_create(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    listen: SocketAddr,
) -> Result<Identity> {
    let (cert_pem, key_pem) = match (cert, key) {
        (Some(c), Some(k)) => (std::fs::read(c)?, std::fs::read(k)?),
        (None, None) => self_signed(data_dir, listen)?,
        _ => {
            return Err(Error::BadRequest(
                "--tls-cert and --tls-key go together".into(),
            ))
        }
    };
    let identity = server_identity(&cert_pem, &key_pem)?;
    let mut line = identity.fingerprint.clone();
    line.push('\n');
    std::fs::write(data_dir.join(FINGERPRINT_FILE), line)?;
    Ok(identity)
}

/// Builds the rustls configuration (ring provider, TLS 1.2 and 1.3) from PEM text.
pub fn server_identity(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("reading TLS certificate: {e}")))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Error::Internal("TLS certificate file holds no certificate".into()))?;
    let fingerprint = fingerprint_of(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Internal(format!("reading TLS key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Identity {
        config: Arc::new(config),
        fingerprint,
    })
}

/// The listener's configuration when certificates come and go (ACME): `resolver` picks the
/// certificate per handshake, `pin` (the key's digest) is what the fingerprint file holds.
pub fn with_resolver(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    pin: String,
    data_dir: &Path,
) -> Result<Identity> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        crate::acme::ACME_TLS_ALPN.to_vec(),
    ];
    std::fs::write(data_dir.join(FINGERPRINT_FILE), format!("{pin}\n"))?;
    Ok(Identity {
        config: Arc::new(config),
        fingerprint: pin,
    })
}

/// Printed at start and written to the fingerprint file in the form clients and edges parse
/// their pin from, so it is the pinning crate's own rendering.
pub fn fingerprint_of(der: &[u8]) -> String {
    grantwire_pinned_tls::Fingerprint::of_der(der).to_string()
}

fn self_signed(data_dir: &Path, listen: SocketAddr) -> Result<(Vec<u8>, Vec<u8>)> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        return Ok((std::fs::read(cert_path)?, std::fs::read(key_path)?));
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        names.push(listen.ip().to_string());
    }
    // A key without a certificate (a broker that ran with ACME only) is kept: it is what edges
    // and clients pinned, and a new one would lock them all out.
    let key = load_or_make_key(&key_path)?;
    let cert = rcgen::CertificateParams::new(names)
        .and_then(|params| params.self_signed(&key))
        .map_err(std::io::Error::other)?;
    let cert_pem = cert.pem();
    write_private(&cert_path, cert_pem.as_bytes())?;
    tracing::info!(path = %cert_path.display(), "made a self-signed TLS certificate");
    Ok((cert_pem.into_bytes(), key.serialize_pem().into_bytes()))
}

/// The broker's TLS key at `path` (PEM), made and saved 0600 if there is none. Self-signed and
/// ACME certificates alike are for this one key, which is what edges and clients pin.
pub fn load_or_make_key(path: &Path) -> Result<rcgen::KeyPair> {
    if path.exists() {
        let pem = std::fs::read_to_string(path)?;
        return rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| Error::Internal(format!("reading {}: {e}", path.display())));
    }
    let key = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
    write_private(path, key.serialize_pem().as_bytes())?;
    tracing::info!(path = %path.display(), "made the broker's TLS key");
    Ok(key)
}

/// [`write_private`] to a temporary file beside `path`, then renamed over it: a reader (or a
/// crash) sees the old contents or the new, never a part.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    write_private(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes a file readable by the owner only, created with that mode (never widened first).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_signed_identity_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = load_or_create(dir.path(), None, None, listen).unwrap();
        let second = load_or_create(dir.path(), None, None, listen).unwrap();
        assert_eq!(first.fingerprint, second.fingerprint);
        assert_eq!(first.fingerprint.len(), 64);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let line = std::fs::read_to_string(dir.path().join(FINGERPRINT_FILE)).unwrap();
        assert_eq!(line.trim(), first.fingerprint);
    }

    #[test]
    fn a_key_left_by_acme_is_kept_for_the_self_signed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        write_private(&dir.path().join(KEY_FILE), key.serialize_pem().as_bytes()).unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        load_or_create(dir.path(), None, None, listen).unwrap();
        let kept = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(kept, key.serialize_pem(), "the key was replaced");
        let cert_pem = std::fs::read(dir.path().join(CERT_FILE)).unwrap();
        let der = CertificateDer::from_pem_slice(&cert_pem).unwrap();
        let pin = grantwire_pinned_tls::Fingerprint::of_der(&key.public_key_der());
        assert!(
            pin.matches(der.as_ref()),
            "the certificate is for the kept key"
        );
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.pem");
        write_private_atomic(&path, b"first, and longer").unwrap();
        write_private_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("f.pem.new").exists());
    }
}
