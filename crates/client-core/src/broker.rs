//! The broker's user API: log in, then ask for a lease with an on-device public key.

use std::sync::Arc;
use std::time::Duration;

use grantwire_proto::{
    EdgeName, LeaseId, LeaseListResponse, LeaseRequest, LeaseResponse, LeaseRevokeResponse,
    LoginRequest, LoginResponse, Profile, PublicKey, WhoamiResponse,
};
use reqwest::Url;
use rustls::RootCertStore;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{from_reqwest, from_response, Call};
use crate::time::unix_now;
use crate::tls::{http_client, http_client_with, probe_client_with, public_roots, Fingerprint};
use crate::{Error, KnownBrokers, Session};

/// Longest a whole request may take once connected. The broker answers from a local SQLite
/// database, so a request that takes this long is stuck, not slow.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTPS client for one broker, trusting it by pin or by the public CAs.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    base: Url,
    pin: Option<Fingerprint>,
    http: reqwest::Client,
}

impl BrokerClient {
    /// `base_url` as [`parse_broker_url`] takes it. With `pin`, exactly the certificate with
    /// that SHA-256 fingerprint is accepted; without, one signed by a public CA.
    pub fn new(base_url: &str, pin: Option<Fingerprint>) -> Result<Self, Error> {
        Ok(Self {
            base: parse_broker_url(base_url)?,
            pin,
            http: http_client(pin),
        })
    }

    /// [`BrokerClient::new`] trusting the CAs in `roots` instead of the public ones when there
    /// is no pin: a broker whose certificate a private CA signed.
    pub fn with_roots(
        base_url: &str,
        pin: Option<Fingerprint>,
        roots: Arc<RootCertStore>,
    ) -> Result<Self, Error> {
        Ok(Self {
            base: parse_broker_url(base_url)?,
            pin,
            http: http_client_with(pin, roots),
        })
    }

    /// A client for the broker that issued `session`, trusting it as at login.
    pub fn for_session(session: &Session) -> Result<Self, Error> {
        Self::new(&session.broker_url, session.fingerprint)
    }

    /// The normalised base URL (ends with `/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn pin(&self) -> Option<Fingerprint> {
        self.pin
    }

    /// Logs in with password and the current TOTP code. The returned session records this
    /// broker and its pin, so later calls reach the same broker trusted the same way.
    pub async fn login(&self, user: &str, password: &str, code: &str) -> Result<Session, Error> {
        let body = LoginRequest {
            user: user.to_owned(),
            password: password.to_owned(),
            code: code.to_owned(),
        };
        let resp: LoginResponse = self.post("v1/login", &body, None, Call::Login).await?;
        tracing::info!(user, broker = %self.base, expires_at = resp.expires_at, "logged in");
        Ok(Session {
            broker_url: self.base.to_string(),
            fingerprint: self.pin,
            user: user.to_owned(),
            token: resp.token,
            expires_at: resp.expires_at,
        })
    }

    /// Asks for a lease on `edge` for `public_key`; the broker pins it to the source address of
    /// this request. Refuses to send `session`'s token to any broker but the one that issued it.
    pub async fn request_lease(
        &self,
        session: &Session,
        edge: &str,
        public_key: &PublicKey,
    ) -> Result<Profile, Error> {
        self.check_session(session)?;
        // Refused here, before anything is sent: the broker would refuse it too.
        let edge = crate::output::parse_edge_name(edge)?;
        let edge = edge.as_str();
        let body = LeaseRequest {
            edge: edge.to_owned(),
            public_key: *public_key,
        };
        let call = Call::Lease { edge };
        let resp: LeaseResponse = self
            .post("v1/leases", &body, Some(&session.token), call)
            .await?;
        let p = &resp.profile;
        tracing::info!(edge, lease = %p.lease_id, pin = %p.pin, expires_at = p.expires_at, "lease issued");
        Ok(resp.profile)
    }

    /// Ends `session` on the broker that issued it. A session the broker no longer accepts
    /// (expired, idle, or its user disabled) has ended already, which is what was asked.
    pub async fn logout(&self, session: &Session) -> Result<(), Error> {
        if parse_broker_url(&session.broker_url)? != self.base {
            return Err(Error::SessionBrokerMismatch {
                session_broker: session.broker_url.clone(),
                broker: self.base.to_string(),
            });
        }
        let url = self
            .base
            .join("v1/logout")
            .map_err(|_| invalid_url(self.base.as_str(), "cannot join an API path to it"))?;
        let resp = self
            .http
            .post(url)
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&session.token)
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| from_reqwest(&self.base, e))?;
        let status = resp.status();
        if status.is_success() || status.as_u16() == 401 {
            tracing::info!(broker = %self.base, "logged out");
            return Ok(());
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| from_reqwest(&self.base, e))?;
        Err(from_response(status.as_u16(), &bytes, Call::Logout))
    }

    /// Who `session` is and where the broker sees this device, with the user's live leases
    /// and whether each is pinned to that address (one that is not needs [`renew`](Self::renew)).
    pub async fn whoami(&self, session: &Session) -> Result<WhoamiResponse, Error> {
        self.check_session(session)?;
        let url = self.api_url("v1/whoami")?;
        let req = self
            .http
            .get(url)
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&session.token);
        self.send("v1/whoami", req, Call::Whoami).await
    }

    /// Renews lease `lease_id`: the broker re-pins it to this request's source address and
    /// moves its expiry. The lease keeps its keys and tunnel address, so the returned profile
    /// goes with the private key the lease was first made for.
    pub async fn renew(&self, session: &Session, lease_id: &str) -> Result<Profile, Error> {
        self.check_session(session)?;
        check_lease_id(lease_id)?;
        let path = format!("v1/leases/{lease_id}/renew");
        let call = Call::Renew { lease_id };
        let resp: LeaseResponse = self
            .post(&path, &serde_json::json!({}), Some(&session.token), call)
            .await?;
        let p = &resp.profile;
        tracing::info!(edge = %p.edge, lease = %p.lease_id, pin = %p.pin, expires_at = p.expires_at, "lease renewed");
        Ok(resp.profile)
    }

    /// The session's user's live leases, with the last handshake each edge reported.
    pub async fn leases(&self, session: &Session) -> Result<LeaseListResponse, Error> {
        self.check_session(session)?;
        let req = self
            .http
            .get(self.api_url("v1/leases")?)
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&session.token);
        let resp: LeaseListResponse = self.send("v1/leases", req, Call::ListLeases).await?;
        for lease in &resp.leases {
            parsed::<LeaseId>("v1/leases", &lease.id)?;
            parsed::<EdgeName>("v1/leases", &lease.edge)?;
        }
        Ok(resp)
    }

    /// Revokes the session's user's live lease `lease_id`; the edge drops the peer at once.
    /// Another user's lease is refused ([`Error::NotYourLease`]), an unknown or dead one is
    /// [`Error::UnknownLease`].
    pub async fn revoke(
        &self,
        session: &Session,
        lease_id: &str,
    ) -> Result<LeaseRevokeResponse, Error> {
        self.check_session(session)?;
        check_lease_id(lease_id)?;
        let path = format!("v1/leases/{lease_id}/revoke");
        let call = Call::Revoke { lease_id };
        let resp: LeaseRevokeResponse = self
            .post(&path, &serde_json::json!({}), Some(&session.token), call)
            .await?;
        parsed::<LeaseId>(&path, &resp.id)?;
        parsed::<EdgeName>(&path, &resp.edge)?;
        tracing::info!(lease = %resp.id, edge = %resp.edge, "lease revoked");
        Ok(resp)
    }

    /// How the broker at `base_url` can be trusted, found by one TLS handshake that sends no
    /// secret: a certificate a public CA signed needs nothing, any other is known only by its
    /// fingerprint, which the person must accept (or refuse) before anything is sent to it.
    pub async fn probe(base_url: &str) -> Result<BrokerTrust, Error> {
        Self::probe_with_roots(base_url, public_roots()).await
    }

    /// [`BrokerClient::probe`] with `roots` as the CAs that make a certificate trusted.
    pub async fn probe_with_roots(
        base_url: &str,
        roots: Arc<RootCertStore>,
    ) -> Result<BrokerTrust, Error> {
        Ok(Self::probe_shown(base_url, roots).await?.0)
    }

    /// How to trust the broker at `base_url` for a login, given the fingerprints this device
    /// already trusts. Once `known` holds one for it, the broker stays pinned to that one: a
    /// different certificate is refused ([`Error::FingerprintChanged`], before anything is
    /// sent) even when a CA signed it, since a CA-signed certificate for the broker's name is
    /// what an attacker who can get one (or a compromised CA) would present. Without a known
    /// fingerprint this is [`BrokerClient::probe_with_roots`].
    pub async fn trust_for_login(
        known: &KnownBrokers,
        base_url: &str,
        roots: Arc<RootCertStore>,
    ) -> Result<BrokerTrust, Error> {
        let known_fp = known.get(base_url)?;
        let (trust, shown) = Self::probe_shown(base_url, roots).await?;
        // A pin of the certificate or of its key (a broker with ACME certificates announces
        // its key's, which every renewal keeps).
        match (known_fp, shown.get()) {
            (Some(known), Some(presented)) if !shown.matched_by(&known) => {
                Err(Error::FingerprintChanged {
                    broker: base_url.to_owned(),
                    known,
                    presented,
                })
            }
            (Some(known), _) => Ok(BrokerTrust::Fingerprint(known)),
            (None, _) => Ok(trust),
        }
    }

    /// The probe's verdict and the certificate it was shown, CA-signed or not.
    async fn probe_shown(
        base_url: &str,
        roots: Arc<RootCertStore>,
    ) -> Result<(BrokerTrust, Arc<grantwire_pinned_tls::Presented>), Error> {
        let base = parse_broker_url(base_url)?;
        let (http, presented) = probe_client_with(roots);
        let url = base
            .join("v1/openapi.json")
            .map_err(|_| invalid_url(base.as_str(), "cannot join an API path to it"))?;
        // Any HTTP answer (a 401 is the usual one) means the handshake passed the CA check.
        match http.get(url).timeout(REQUEST_TIMEOUT).send().await {
            Ok(_) => Ok((BrokerTrust::CaSigned, presented)),
            Err(e) => match (from_reqwest(&base, e), presented.get()) {
                (Error::Untrusted { .. }, Some(fingerprint)) => {
                    Ok((BrokerTrust::Fingerprint(fingerprint), presented))
                }
                (err, _) => Err(err),
            },
        }
    }

    /// Refuses to send `session`'s token to any broker but the one that issued it, or once it
    /// has expired by this device's clock.
    fn check_session(&self, session: &Session) -> Result<(), Error> {
        if parse_broker_url(&session.broker_url)? != self.base {
            return Err(Error::SessionBrokerMismatch {
                session_broker: session.broker_url.clone(),
                broker: self.base.to_string(),
            });
        }
        if session.is_expired_at(unix_now()) {
            return Err(Error::SessionExpired {
                expires_at: session.expires_at,
            });
        }
        Ok(())
    }

    fn api_url(&self, path: &str) -> Result<Url, Error> {
        self.base
            .join(path)
            .map_err(|_| invalid_url(self.base.as_str(), "cannot join an API path to it"))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        bearer: Option<&str>,
        call: Call<'_>,
    ) -> Result<T, Error> {
        let url = self.api_url(path)?;
        let mut req = self.http.post(url).timeout(REQUEST_TIMEOUT).json(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        self.send(path, req, call).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        req: reqwest::RequestBuilder,
        call: Call<'_>,
    ) -> Result<T, Error> {
        let resp = req.send().await.map_err(|e| from_reqwest(&self.base, e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| from_reqwest(&self.base, e))?;
        if !status.is_success() {
            return Err(from_response(status.as_u16(), &bytes, call));
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Protocol {
            detail: format!("the answer to {path} does not parse: {source}"),
            source: Some(source),
        })
    }
}

/// Parses and normalises a broker URL. `host:port` without a scheme means HTTPS; any other
/// scheme is refused, because the password and the bearer token must never cross the network
/// in clear. Credentials, queries and fragments are refused too: the API adds its own paths.
pub fn parse_broker_url(input: &str) -> Result<Url, Error> {
    let trimmed = input.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|_| invalid_url(input, "not a URL"))?;
    if url.scheme() != "https" {
        return Err(invalid_url(input, "the broker is reached over https only"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid_url(input, "it names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid_url(
            input,
            "it must not hold a user name or password",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid_url(input, "it must not have a query or fragment"));
    }
    // A base path without a trailing slash would lose its last segment in `Url::join`.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// How a broker's certificate can be trusted, as [`BrokerClient::probe`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerTrust {
    /// Signed by a public CA: no pin needed.
    CaSigned,
    /// Self-signed (or signed by no public CA): trusted only by this fingerprint.
    Fingerprint(Fingerprint),
}

/// A lease id or name in an answer whose wire type is still a string (the lease list, a
/// revocation), held to the rule a profile's fields are parsed by: the client shows them in a
/// terminal and uses them in URL paths and file names.
fn parsed<T>(path: &str, value: &str) -> Result<(), Error>
where
    T: std::str::FromStr<Err = grantwire_proto::FieldError>,
{
    value.parse::<T>().map(drop).map_err(|e| Error::Protocol {
        detail: format!("the answer to {path} does not parse: {e}"),
        source: None,
    })
}

/// Lease ids go into a URL path: only what parses as the [`LeaseId`]s the broker makes.
fn check_lease_id(lease_id: &str) -> Result<(), Error> {
    match lease_id.parse::<LeaseId>() {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::InvalidLeaseId {
            lease_id: crate::error::sanitize(lease_id),
        }),
    }
}

fn invalid_url(url: &str, reason: &'static str) -> Error {
    Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;
