//! HTTPS trust toward a grantwire broker, shared by client-core, the edge and the broker's own
//! alert delivery: a certificate [`Fingerprint`], a rustls verifier that accepts exactly the
//! pinned certificate (the default broker uses a self-signed one and prints its fingerprint at
//! start) or else the public CAs, and the reqwest clients built on that trust.
//!
//! It exists so the broker and the edge need not link client-core for this alone. It holds no
//! broker, edge or client logic (no API calls, no sessions, no known-brokers file) and does no
//! I/O of its own: it builds TLS configurations and HTTP clients, and the caller sends with them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// SHA-256 of a certificate's DER encoding, or of its public key's (the SubjectPublicKeyInfo).
/// Written as 64 lowercase hex digits; parsing also accepts upper case, `:` separators and a
/// `sha256:` prefix, as other tools print them.
///
/// A pin matches a certificate when it is either digest: a self-signed broker announces its
/// certificate's (it never changes), a broker with ACME certificates its key's, which it keeps
/// across renewals, so a pin outlives every certificate that key is issued in. The two digests
/// cover different byte strings, and finding a certificate whose digest equals some key's is a
/// SHA-256 second preimage.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a certificate fingerprint is 64 hex digits (SHA-256), optionally with ':' separators")]
pub struct FingerprintError;

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// The digest of the public key in the certificate `cert_der`; `None` when it does not
    /// parse as an X.509 certificate.
    pub fn of_key_in(cert_der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
        Some(Self::of_der(cert.tbs_certificate.subject_pki.raw))
    }

    /// Whether this pin is the certificate's digest or its public key's. Constant-time in the
    /// comparisons, so a probing peer learns nothing from how fast a wrong certificate fails.
    pub fn matches(&self, cert_der: &[u8]) -> bool {
        let cert: bool = Self::of_der(cert_der).0.ct_eq(&self.0).into();
        let key: bool = Self::of_key_in(cert_der).is_some_and(|k| k.0.ct_eq(&self.0).into());
        cert | key
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;
    fn from_str(s: &str) -> Result<Self, FingerprintError> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
        if hex.len() != 64 {
            return Err(FingerprintError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let txt = std::str::from_utf8(pair).map_err(|_| FingerprintError)?;
            out[i] = u8::from_str_radix(txt, 16).map_err(|_| FingerprintError)?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The broker presented a certificate other than the pinned one. Found inside the
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` a failed handshake returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the broker's certificate does not match the pinned fingerprint {pinned} (it presented certificate {presented}{})",
    presented_key.map(|k| format!(", key {k}")).unwrap_or_default()
)]
pub struct PinMismatch {
    pub pinned: Fingerprint,
    /// The presented certificate's digest.
    pub presented: Fingerprint,
    /// Its public key's, when it parsed.
    pub presented_key: Option<Fingerprint>,
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The public web CAs (Mozilla's list, compiled in): what a broker without a pin is checked
/// against, unless a caller passes its own roots (a private CA).
pub fn public_roots() -> Arc<RootCertStore> {
    Arc::new(RootCertStore::from_iter(
        webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
    ))
}

/// A rustls client configuration that accepts exactly the certificates `pin` matches (its
/// fingerprint, or one of its key; any name, no CA), or, without a pin, certificates signed by the public web CAs.
pub fn client_config(pin: Option<Fingerprint>) -> ClientConfig {
    client_config_for_versions(pin, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] restricted to `versions` (TLS 1.2 and/or 1.3), for checking which versions
/// a broker accepts.
pub fn client_config_for_versions(
    pin: Option<Fingerprint>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    client_config_with(pin, versions, public_roots())
}

/// [`client_config_for_versions`] with the CAs to trust without a pin given.
fn client_config_with(
    pin: Option<Fingerprint>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    roots: Arc<RootCertStore>,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        // The ring provider supports TLS 1.2 and 1.3, the only versions rustls has.
        .expect("ring provider supports TLS 1.2 and 1.3");
    match pin {
        Some(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier { pin, provider }))
            .with_no_client_auth(),
        None => builder.with_root_certificates(roots).with_no_client_auth(),
    }
}

/// An HTTP client for the broker with [`client_config`]'s trust.
pub fn http_client(pin: Option<Fingerprint>) -> reqwest::Client {
    http_client_with(pin, public_roots())
}

/// [`http_client`] trusting `roots` instead of the public CAs when there is no pin.
pub fn http_client_with(pin: Option<Fingerprint>, roots: Arc<RootCertStore>) -> reqwest::Client {
    let config = client_config_with(pin, rustls::DEFAULT_VERSIONS, roots);
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        // The broker API never redirects; following one could carry a password or bearer token
        // (307/308 resend the body) to a host the pin or the user never approved.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        // Only fails when the TLS backend is missing, which the feature set rules out.
        .expect("reqwest client with rustls")
}

/// The certificate a [`probe_client`] was last shown (DER).
#[derive(Debug, Default)]
pub struct Presented(std::sync::Mutex<Option<Vec<u8>>>);

impl Presented {
    /// Its fingerprint.
    pub fn get(&self) -> Option<Fingerprint> {
        self.der().map(|der| Fingerprint::of_der(&der))
    }

    /// Whether `pin` matches it (its certificate or its key, as [`Fingerprint::matches`]).
    pub fn matched_by(&self, pin: &Fingerprint) -> bool {
        self.der().is_some_and(|der| pin.matches(&der))
    }

    fn der(&self) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// An HTTP client that trusts only the public web CAs, like [`http_client`] without a pin, and
/// records the fingerprint of the certificate it is shown, trusted or not. For learning a
/// self-signed broker's fingerprint before trusting it: nothing is sent over a connection
/// whose certificate failed the check.
pub fn probe_client() -> (reqwest::Client, Arc<Presented>) {
    probe_client_with(public_roots())
}

/// [`probe_client`] with `roots` as the CAs that make a certificate trusted.
pub fn probe_client_with(roots: Arc<RootCertStore>) -> (reqwest::Client, Arc<Presented>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let presented = Arc::new(Presented::default());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            // Fails only for an empty root store; webpki-roots is never empty.
            .expect("web PKI verifier over webpki-roots");
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .expect("ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordingVerifier {
            inner: verifier,
            presented: presented.clone(),
        }))
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("reqwest client with rustls");
    (client, presented)
}

/// The web PKI's verdict, with the presented certificate's fingerprint noted on the way.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    presented: Arc<Presented>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self
            .presented
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(end_entity.to_vec());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The pin replaces name and chain checks: the operator told us which key to expect.
        if self.pin.matches(end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            // Carried as a typed error so callers can tell a pin mismatch (possible
            // interception, or a broker whose certificate was regenerated) from other TLS
            // failures, and show both fingerprints.
            let mismatch = PinMismatch {
                pinned: self.pin,
                presented: Fingerprint::of_der(end_entity.as_ref()),
                presented_key: Fingerprint::of_key_in(end_entity.as_ref()),
            };
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(mismatch))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_parses_common_spellings() {
        let fp = Fingerprint::of_der(b"certificate");
        let plain = fp.to_string();
        assert_eq!(plain.len(), 64);
        let colons = plain
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for s in [plain.clone(), colons, format!("sha256:{plain}")] {
            assert_eq!(s.parse::<Fingerprint>(), Ok(fp), "{s}");
        }
        assert!(fp.matches(b"certificate"));
        assert!(!fp.matches(b"certificatf"));
    }

    fn cert_with(key: &rcgen::KeyPair, name: &str) -> Vec<u8> {
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.self_signed(key).unwrap().der().to_vec()
    }

    #[test]
    fn a_key_pin_matches_every_certificate_of_that_key_and_no_other() {
        let key = rcgen::KeyPair::generate().unwrap();
        let first = cert_with(&key, "broker.example");
        let renewed = cert_with(&key, "broker.example");
        assert_ne!(first, renewed, "two issuances differ (serial numbers)");
        let pin = Fingerprint::of_key_in(&first).unwrap();
        assert_eq!(pin, Fingerprint::of_der(&key.public_key_der()));
        assert!(pin.matches(&first));
        assert!(pin.matches(&renewed));
        // Same name, another key: refused.
        let other = cert_with(&rcgen::KeyPair::generate().unwrap(), "broker.example");
        assert!(!pin.matches(&other));
        // A certificate pin still matches only its certificate.
        let cert_pin = Fingerprint::of_der(&first);
        assert!(cert_pin.matches(&first));
        assert!(!cert_pin.matches(&renewed));
        assert_eq!(Fingerprint::of_key_in(b"not a certificate"), None);
    }

    #[test]
    fn the_pinned_verifier_reports_both_digests_on_a_mismatch() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = cert_with(&key, "broker.example");
        let pinned = Fingerprint::of_der(b"something else");
        let verifier = PinnedVerifier {
            pin: pinned,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let cert = CertificateDer::from(der.clone());
        let name = ServerName::try_from("broker.example").unwrap();
        let err = verifier
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = err else {
            panic!("not a pin mismatch: {err:?}");
        };
        let mismatch = other.0.downcast_ref::<PinMismatch>().unwrap();
        assert_eq!(mismatch.presented, Fingerprint::of_der(&der));
        assert_eq!(mismatch.presented_key, Fingerprint::of_key_in(&der));
        let key_pin = Fingerprint::of_der(&key.public_key_der());
        let ok = PinnedVerifier {
            pin: key_pin,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        assert!(ok
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_ok());
    }

    #[test]
    fn fingerprint_rejects_garbage() {
        for s in ["", "abc", &"g".repeat(64), &"a".repeat(66)] {
            assert_eq!(s.parse::<Fingerprint>(), Err(FingerprintError), "{s}");
        }
    }
}
