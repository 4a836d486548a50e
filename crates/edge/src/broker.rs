//! The edge's HTTPS link to the broker: one-time enrolment, then the `/v1/edge/sync` stream of
//! lease sets, reconnecting with backoff for as long as the edge runs.

use std::time::Duration;

use futures_util::StreamExt;
use grantwire_proto::{EdgeConfig, EnrolRequest, EnrolResponse, ErrorBody, LeaseSet, PublicKey};
use reqwest::{Client, StatusCode, Url};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::sse::{SseError, SseParser};
use crate::state::Credential;

/// The broker sends a keep-alive comment every 15 s; three missed ones mean the connection is
/// dead even if TCP has not noticed (a NAT dropped it, the broker host vanished).
const READ_TIMEOUT: Duration = Duration::from_secs(45);
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Capped low because a revoke must reach the edge soon after the broker is back.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Longest wait for the answer to a one-off request (a report).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures in a row before the outage is worth a human's attention (about a minute).
const WARN_AFTER_FAILURES: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach the broker")]
    Http(#[from] reqwest::Error),
    /// 401/403: the token is spent or wrong, or the credential was revoked.
    #[error("the broker refused: {0}")]
    Refused(String),
    #[error("the broker answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("the broker sent a body this edge does not understand")]
    Body(#[from] serde_json::Error),
    #[error("the sync stream broke")]
    Stream(#[from] SseError),
    #[error("no data from the broker for {0:?}")]
    Silent(Duration),
    #[error("the broker closed the sync stream")]
    Closed,
}

impl BrokerError {
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused(_))
    }

    /// The broker understood the request and refused its content (400, 413): resending it
    /// unchanged cannot help. Not for 401/403 (credentials) or 429 (come back later).
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Status { status, .. }
            if status.is_client_error() && *status != StatusCode::TOO_MANY_REQUESTS)
    }
}

/// `POST /v1/edge/enrol` with the one-time token. The token is sent once and never logged.
pub async fn enrol(
    client: &Client,
    broker: &Url,
    token: &str,
    public_key: PublicKey,
) -> Result<EnrolResponse, BrokerError> {
    let body = EnrolRequest {
        token: token.to_owned(),
        public_key,
    };
    let response = client
        .post(endpoint(broker, "v1/edge/enrol"))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        return Err(error_from(status, &bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// Keeps a sync stream open for as long as the edge runs, publishing each lease set on `sets`.
/// Never returns: while the broker is away the data plane keeps enforcing the last set.
///
/// A broker that refuses the credential (401/403: the edge was removed, or its credential
/// replaced) is not an outage: the edge publishes an empty set for `config` at once, so the
/// data plane drops every peer, the cache is emptied (a restart brings nothing back) and the
/// guard's pin sets empty while the guard itself stays in place. It says so once at ERROR and
/// keeps asking, at the capped backoff, in case the refusal was the broker's mistake.
pub async fn sync_forever(
    client: Client,
    broker: Url,
    credential: Credential,
    config: EdgeConfig,
    sets: watch::Sender<Option<LeaseSet>>,
    link: watch::Sender<bool>,
) {
    let mut backoff = BACKOFF_START;
    let mut failures = 0u32;
    let mut refused = false;
    loop {
        let mut delivered = false;
        let err = sync_once(&client, &broker, &credential, &sets, &link, &mut delivered).await;
        link.send_replace(false);
        if delivered {
            backoff = BACKOFF_START;
            failures = 0;
            refused = false;
        }
        failures += 1;
        if err.is_refused() {
            if !refused {
                refused = true;
                sets.send_replace(Some(empty_set(&config)));
                error!(error = %error_chain(&err), "the broker refused this edge's credential; dropped every lease and emptied the lease cache; Plex's ports stay closed");
            } else {
                debug!(error = %error_chain(&err), "the broker still refuses this edge's credential");
            }
        } else if failures == WARN_AFTER_FAILURES {
            warn!(error = %error_chain(&err), failures, "broker sync failing; enforcing the last lease set");
        } else {
            info!(error = %error_chain(&err), retry_in = ?backoff, "broker sync disconnected; retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_CAP);
    }
}

async fn sync_once(
    client: &Client,
    broker: &Url,
    credential: &Credential,
    sets: &watch::Sender<Option<LeaseSet>>,
    link: &watch::Sender<bool>,
    delivered: &mut bool,
) -> BrokerError {
    let response = match client
        .get(endpoint(broker, "v1/edge/sync"))
        .bearer_auth(credential.expose())
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let status = response.status();
    if !status.is_success() {
        let bytes = response.bytes().await.unwrap_or_default();
        return error_from(status, &bytes);
    }
    info!(broker = %broker, "broker sync connected");
    link.send_replace(true);
    let mut stream = response.bytes_stream();
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(READ_TIMEOUT, stream.next()).await {
            Err(_) => return BrokerError::Silent(READ_TIMEOUT),
            Ok(None) => return BrokerError::Closed,
            Ok(Some(Err(e))) => return e.into(),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let events = match parser.feed(&chunk) {
            Ok(events) => events,
            Err(e) => return e.into(),
        };
        for event in events.into_iter().filter(|e| e.event == "leases") {
            let parse_started = std::time::Instant::now();
            match serde_json::from_str::<LeaseSet>(&event.data) {
                Ok(set) => {
                    debug!(
                        leases = set.leases.len(),
                        bytes = event.data.len(),
                        parse_us = parse_started.elapsed().as_micros() as u64,
                        "lease set received"
                    );
                    *delivered = true;
                    sets.send_replace(Some(set));
                }
                Err(e) => return e.into(),
            }
        }
    }
}

/// POSTs `body` as JSON with the edge's credential; any 2xx is success.
pub async fn post_json<T: serde::Serialize>(
    client: &Client,
    broker: &Url,
    path: &str,
    credential: &Credential,
    body: &T,
) -> Result<(), BrokerError> {
    let response = client
        .post(endpoint(broker, path))
        .bearer_auth(credential.expose())
        .json(body)
        // A broker that takes the connection and never answers must not stall the caller.
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let bytes = response.bytes().await.unwrap_or_default();
    Err(error_from(status, &bytes))
}

/// The set a refused edge enforces: its own config, no lease.
fn empty_set(config: &EdgeConfig) -> LeaseSet {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    LeaseSet {
        config: config.clone(),
        leases: Vec::new(),
        generated_at: now,
        broker_time_ms: None,
    }
}

fn endpoint(broker: &Url, path: &str) -> String {
    format!("{}/{path}", broker.as_str().trim_end_matches('/'))
}

/// Maps an error response to a `BrokerError`, quoting the broker's own message (which by
/// contract never holds secrets) when the body is the documented shape.
fn error_from(status: StatusCode, body: &[u8]) -> BrokerError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| status.canonical_reason().unwrap_or("error").to_owned());
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => BrokerError::Refused(message),
        _ => BrokerError::Status { status, message },
    }
}

/// `a: b: c` from an error and its sources, for one log field.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_is_refused_with_the_broker_message() {
        let body = br#"{"error":{"code":"unauthorized","message":"invalid or used token"}}"#;
        let err = error_from(StatusCode::UNAUTHORIZED, body);
        assert!(err.is_refused());
        assert_eq!(err.to_string(), "the broker refused: invalid or used token");
        let err = error_from(StatusCode::INTERNAL_SERVER_ERROR, b"<html>");
        assert!(!err.is_refused());
        assert!(err.to_string().contains("Internal Server Error"));
    }

    #[test]
    fn only_a_refused_content_is_rejected() {
        let rejected = |status: StatusCode| error_from(status, b"").is_rejected();
        assert!(rejected(StatusCode::BAD_REQUEST));
        assert!(rejected(StatusCode::PAYLOAD_TOO_LARGE));
        assert!(!rejected(StatusCode::TOO_MANY_REQUESTS));
        assert!(!rejected(StatusCode::UNAUTHORIZED));
        assert!(!rejected(StatusCode::INTERNAL_SERVER_ERROR));
    }

    /// A broker that answers every request with 401, as it does for a removed edge.
    async fn refusing_broker() -> Url {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = br#"{"error":{"code":"unauthorized","message":"unauthorized"}}"#;
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body).await;
            }
        });
        format!("http://{addr}").parse().unwrap()
    }

    fn config() -> EdgeConfig {
        EdgeConfig {
            name: "home".into(),
            subnet: "10.77.0.0/24".parse().unwrap(),
            tunnel_address: "10.77.0.1".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn a_refused_credential_publishes_an_empty_set_once() {
        let cached = LeaseSet {
            config: config(),
            leases: vec![crate::state::tests::lease("l-1", 7, i64::MAX)],
            generated_at: 1,
            broker_time_ms: None,
        };
        let (sets, mut rx) = watch::channel(Some(cached));
        rx.borrow_and_update();
        let (link, _link_rx) = watch::channel(false);
        let broker = refusing_broker().await;
        let sync = tokio::spawn(sync_forever(
            grantwire_pinned_tls::http_client(None),
            broker,
            Credential::new("removed".into()),
            config(),
            sets,
            link,
        ));
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("an empty set within 5 s")
            .unwrap();
        let set = rx.borrow_and_update().clone().unwrap();
        assert!(set.leases.is_empty());
        assert_eq!(set.config, config());
        // The retries that follow (250 ms, 500 ms, 1 s...) publish nothing more.
        let again = tokio::time::timeout(Duration::from_millis(2000), rx.changed()).await;
        assert!(again.is_err(), "a second set was published");
        sync.abort();
    }

    #[test]
    fn endpoint_joins_with_or_without_slash() {
        for base in ["https://b.test:8443", "https://b.test:8443/"] {
            let url: Url = base.parse().unwrap();
            assert_eq!(
                endpoint(&url, "v1/edge/sync"),
                "https://b.test:8443/v1/edge/sync"
            );
        }
    }
}
