//! Login (password + TOTP), throttling of failed logins, sessions, and the sealing of TOTP
//! secrets at rest.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grantwire_proto::{LoginRequest, LoginResponse};
use rusqlite::Connection;

use crate::broker::ip_text;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::secrets::{self, SealKey, Token, SECRETS_KEY_FILE};
use crate::service::Sessions;
use crate::store::{self, leases, users, AuditEvent, Db};
use crate::throttle::{self, Buckets, RateLimit};
use crate::totp;

/// The most of a refused login's user name the audit log keeps: whatever was typed, a name or
/// not, shortened so a long one cannot bloat the log.
const MAX_LOGGED_NAME_LEN: usize = 64;

/// Where the broker tells its listener that a source's network has proved itself (a login, an
/// edge's sync): the public listener keeps connection slots for such networks, so a stranger
/// filling the rest cannot lock out the people who use the broker.
pub trait KnownSources: Send + Sync + std::fmt::Debug {
    fn mark_known(&self, ip: IpAddr);
}

/// The settings [`AuthState`] is made from.
pub struct AuthConfig {
    /// The public listener's connection count; a login opens its network's reserved slots.
    pub conns: Arc<dyn KnownSources>,
    pub clock: Arc<dyn Clock>,
    pub session_idle: Duration,
    pub login_rate: RateLimit,
    pub lease_rate: RateLimit,
}

/// What login and session checks need besides the database: the key that opens TOTP secrets,
/// the clock, the idle timeout and the per-source budgets.
#[derive(Debug)]
pub struct AuthState {
    /// Shared with the lease-set reader's blocking tasks and the batch writer's jobs, which
    /// open and seal lease preshared keys.
    pub seal: Arc<SealKey>,
    pub clock: Arc<dyn Clock>,
    pub session_idle: Duration,
    pub login_buckets: Buckets,
    pub lease_buckets: Buckets,
    pub conns: Arc<dyn KnownSources>,
}

impl AuthState {
    /// Loads (or, for a database without sealed secrets, creates) `secrets.key` and seals any
    /// TOTP secret still stored in plaintext, in one transaction. Fails closed: a missing or
    /// wrong key with sealed rows present stops the start instead of making a new key, which
    /// would lock every user out of their second factor without saying why.
    pub async fn prepare(db: &Db, data_dir: &Path, config: AuthConfig) -> Result<Self> {
        let path = data_dir.join(SECRETS_KEY_FILE);
        let (sealed, sealed_psk) = db
            .read(|c| Ok((users::any_sealed(c)?, leases::any_sealed_psk(c)?)))
            .await?;
        let seal = match (
            SealKey::load(&path)?,
            sealed.is_some() || sealed_psk.is_some(),
        ) {
            (Some(key), _) => key,
            (None, false) => SealKey::create(&path)?,
            (None, true) => {
                return Err(Error::Internal(format!(
                    "{} is missing but the database holds sealed TOTP secrets or lease keys: \
                     restore the key file from the backup made with the database",
                    path.display()
                )))
            }
        };
        if let Some((name, blob)) = &sealed {
            if seal.open(name.as_bytes(), blob).is_none() {
                return Err(Error::Internal(format!(
                    "{} does not open the TOTP secrets in the database (wrong key file?)",
                    path.display()
                )));
            }
        }
        if let Some((id, blob)) = &sealed_psk {
            if leases::open_psk(&seal, id, blob).is_err() {
                return Err(Error::Internal(format!(
                    "{} does not open the lease preshared keys in the database (wrong key file?)",
                    path.display()
                )));
            }
        }
        let seal = Arc::new(seal);
        seal_plaintext_secrets(db, &seal).await?;
        seal_plaintext_psks(db, &seal, config.clock.now_secs()).await?;
        for network in db.read(users::all_login_sources).await? {
            config.conns.mark_known(network.addr());
        }
        Ok(Self {
            conns: config.conns,
            seal,
            clock: config.clock,
            session_idle: config.session_idle,
            login_buckets: config.login_rate.into(),
            lease_buckets: config.lease_rate.into(),
        })
    }

    /// The broker's clock, in Unix seconds; read it as [`Broker::now`].
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_secs()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Seals a new TOTP secret for `user` (the name is the associated data).
    pub fn seal_totp(&self, user: &str, secret: &[u8]) -> Result<Vec<u8>> {
        self.seal.seal(user.as_bytes(), secret)
    }
}

async fn seal_plaintext_secrets(db: &Db, seal: &Arc<SealKey>) -> Result<()> {
    let seal = Arc::clone(seal);
    let sealed = db
        .write(move |tx| {
            let rows = users::plaintext_secrets(tx)?;
            for (id, name, secret) in &rows {
                let sealed = seal.seal(name.as_bytes(), secret)?;
                users::seal_existing(tx, *id, &sealed)?;
            }
            Ok(rows.len())
        })
        .await?;
    if sealed == 0 {
        return Ok(());
    }
    // Move the change out of the WAL into the main file; secure_delete has zeroed the old
    // plaintext there.
    checkpoint(db).await?;
    tracing::info!(users = sealed, "sealed plaintext TOTP secrets");
    Ok(())
}

/// Copies the WAL into the main file and empties it. On a connection of its own: the writer's
/// batch transaction has committed by the time `write` returns.
async fn checkpoint(db: &Db) -> Result<()> {
    let path = db.path().to_owned();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let conn = store::connect(&path)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    })
    .await?
}

/// Seals the preshared keys of live leases still stored in plaintext (written before keys were
/// sealed) and erases those of ended leases, in one transaction, then checkpoints so the WAL
/// keeps no copy of the plaintext either.
async fn seal_plaintext_psks(db: &Db, seal: &Arc<SealKey>, now: i64) -> Result<()> {
    let seal = Arc::clone(seal);
    let (sealed, erased) = db
        .write(move |tx| leases::seal_plaintext_psks(tx, &seal, now))
        .await?;
    if sealed + erased == 0 {
        return Ok(());
    }
    checkpoint(db).await?;
    tracing::info!(sealed, erased, "sealed plaintext lease preshared keys");
    Ok(())
}

/// The network a login is remembered by: what a lease pin would be by default (the address for
/// IPv4, its /64 for IPv6, whose privacy addresses change within it daily).
fn login_network(source: IpAddr) -> String {
    crate::lease_terms::pin_for(source.to_canonical())
        .map_or_else(|_| source.to_canonical().to_string(), |pin| pin.to_string())
}

/// How a login attempt ended, for the audit log and the failure count.
enum Outcome {
    Ok,
    /// Unknown user, wrong password or wrong code.
    Failed,
    /// A right password with a right code for a step already used.
    TotpReused,
    /// Refused before looking at the credentials: the account waits or is over its hourly cap.
    Throttled,
    Disabled,
    /// Invited and not enrolled: sign in on the web pages first.
    Invited,
}

impl Sessions<'_> {
    /// Checks password and TOTP code and opens a session. Every refusal is the same
    /// [`Error::Unauthorized`] (throttled and disabled accounts included), and an unknown user
    /// costs the same argon2 work as a known one.
    pub async fn login(&self, req: LoginRequest, source: IpAddr) -> Result<LoginResponse> {
        let now = self.broker.now();
        // Only a name of `UserName`'s shape can exist; anything else is not looked up.
        let user = if req.user.parse::<grantwire_proto::UserName>().is_ok() {
            let name = req.user.clone();
            self.broker
                .db()
                .read(move |c| users::by_name(c, &name))
                .await?
        } else {
            None
        };
        // Hashed even for a locked account, so its answer takes as long as any other.
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let password_ok = self
            .broker
            .argon2()
            .verify_from(source, req.password, phc)
            .await?;
        // An unknown user's code is checked against a dummy secret, so the work done (and the
        // time taken) does not depend on whether the name exists.
        let secret = user
            .as_ref()
            .and_then(|u| {
                self.broker
                    .auth()
                    .seal
                    .open(u.name.as_bytes(), &u.totp_sealed)
            })
            .unwrap_or_else(|| vec![0u8; totp::SECRET_LEN]);
        let secs = u64::try_from(now).unwrap_or(0);
        let step = totp::verify(&secret, &req.code, secs);

        let actor: String = req.user.chars().take(MAX_LOGGED_NAME_LEN).collect();
        let ttl = self.broker.session_ttl();
        let checked = user.clone();
        let who = actor.clone();
        // A refusal is an answer too: its audit rows and failure count commit, and only then
        // does the caller get the 401.
        let answer = self
            .broker
            .db()
            .write(move |tx| {
                let (outcome, network) =
                    decide(tx, checked.as_ref(), source, now, password_ok, step)?;
                match (checked, outcome) {
                    (Some(user), Outcome::Ok) => open_session(tx, &user, ttl, source, now).map(Ok),
                    (user, outcome) => {
                        let refused = (user.as_ref(), network.as_ref(), &outcome);
                        record_refusal(tx, refused, &who, source, now).map(Err)
                    }
                }
            })
            .await?;
        match answer {
            Ok(session) => {
                self.broker.auth().conns.mark_known(source);
                tracing::info!(user = %actor, %source, "login");
                Ok(session)
            }
            Err(kind) => {
                tracing::info!(user = %actor, %source, kind, "login refused");
                Err(Error::Unauthorized)
            }
        }
    }

    /// The user behind a bearer session token, if the session is live: within its lifetime,
    /// used within the idle timeout, and its user not disabled. Marks it used.
    pub async fn user_of(&self, token: &str) -> Result<users::SessionUser> {
        let now = self.broker.now();
        let idle = i64::try_from(self.broker.auth().session_idle.as_secs()).unwrap_or(i64::MAX);
        let hash = secrets::token_hash(token);
        let user = self
            .broker
            .db()
            .read(move |c| users::session_user(c, &hash, now, now.saturating_sub(idle)))
            .await?
            .ok_or(Error::Unauthorized)?;
        // At most one write a second per session, so a burst of lease requests does not queue
        // on the writer just to say the same thing.
        if user.last_used_at < now {
            let id = user.session_id;
            self.broker
                .db()
                .write(move |tx| users::touch_session(tx, id, now))
                .await?;
        }
        Ok(user)
    }

    /// Spends one login attempt of `ip`'s budget (`crate::throttle`); 429 once it has none.
    pub fn spend_login(&self, ip: IpAddr) -> Result<()> {
        let auth = self.broker.auth();
        auth.login_buckets
            .take(ip, auth.clock.now_ms())
            .map_err(|retry_after| Error::RateLimited { retry_after })
    }

    /// Spends one lease request of `ip`'s budget; 429 once it has none.
    pub fn spend_lease(&self, ip: IpAddr) -> Result<()> {
        let auth = self.broker.auth();
        auth.lease_buckets
            .take(ip, auth.clock.now_ms())
            .map_err(|retry_after| Error::RateLimited { retry_after })
    }

    /// The answer to a bearer token of `ip`'s (a session token or an edge credential) that
    /// matched nothing: 401 while the source has login attempts left (spending one), 429 once
    /// it has none. Guessing tokens shares the login budget.
    ///
    /// The token is looked up first, and a real one is never refused for its source's budget:
    /// an edge, or a friend, behind the same address (a household's NAT, a carrier-grade NAT) as
    /// someone who mistyped a password or a stranger sending made-up tokens must keep its sync
    /// stream and its session, or a revocation would not reach the edge. A lookup is one
    /// indexed read of a SHA-256 digest; the connection caps bound how many a source can have
    /// in flight.
    pub fn token_miss(&self, ip: IpAddr) -> Error {
        match self.spend_login(ip) {
            Ok(()) => Error::Unauthorized,
            Err(refused) => refused,
        }
    }

    /// Ends the presenting session.
    pub async fn logout(&self, user: &users::SessionUser, source: IpAddr) -> Result<()> {
        let now = self.broker.now();
        let (id, name) = (user.session_id, user.name.clone());
        self.broker
            .db()
            .write(move |tx| {
                users::delete_session(tx, id)?;
                let event = AuditEvent {
                    kind: "logout",
                    actor: Some(&name),
                    source_ip: ip_text(Some(source)),
                    detail: None,
                };
                store::audit(tx, now, event)
            })
            .await
    }

    /// Marks a session just made by signing in on the web pages (see
    /// [`users::SessionUser::web`]).
    pub async fn mark_web_session(&self, token: &str) -> Result<()> {
        let hash = crate::secrets::token_hash(token);
        self.broker
            .db()
            .write(move |tx| users::mark_web_session(tx, &hash))
            .await
    }
}

/// The outcome of a login whose password and code were checked, with the network it came
/// from when the user exists and may log in.
fn decide(
    tx: &Connection,
    user: Option<&users::UserRow>,
    source: IpAddr,
    now: i64,
    password_ok: bool,
    step: Option<u64>,
) -> Result<(Outcome, Option<users::LoginNetwork>)> {
    Ok(match user {
        None => (Outcome::Failed, None),
        Some(u) if u.disabled_at.is_some() => (Outcome::Disabled, None),
        // Not enrolled yet: the secret in the row was never shown to anyone, and the
        // password is the temporary one, good only for enrolment.
        Some(u) if u.invite_expires_at.is_some() => (Outcome::Invited, None),
        Some(u) => {
            let net = users::login_network(tx, u.id, source)?;
            let state = users::network_state(tx, u.id, &net, now)?;
            let outcome = match (throttle::is_locked(state, now), password_ok, step) {
                (true, _, _) => Outcome::Throttled,
                (false, true, Some(step)) => {
                    if users::claim_totp_step(tx, u.id, step)? {
                        Outcome::Ok
                    } else {
                        Outcome::TotpReused
                    }
                }
                _ => Outcome::Failed,
            };
            (outcome, Some(net))
        }
    })
}

/// What a refused login is recorded against: the user if one has the name, the network it
/// came from if the user may log in, and why it was refused.
type Refused<'a> = (
    Option<&'a users::UserRow>,
    Option<&'a users::LoginNetwork>,
    &'a Outcome,
);

/// Audits a refused login (and counts it against the user's network when it was a wrong
/// credential); returns the audit kind.
fn record_refusal(
    tx: &Connection,
    (user, network, outcome): Refused<'_>,
    actor: &str,
    source: IpAddr,
    now: i64,
) -> Result<&'static str> {
    let kind = match outcome {
        Outcome::Throttled => "login_throttled",
        Outcome::TotpReused => "totp_reused",
        _ => "login_failed",
    };
    let mut locked = None;
    if let (Some(u), Some(net), Outcome::Failed | Outcome::TotpReused) = (user, network, outcome) {
        locked = users::record_failure_from(tx, u.id, net, now)?;
    }
    let detail = match outcome {
        Outcome::Disabled => Some("user disabled".to_owned()),
        Outcome::Invited => Some("invited, not enrolled".to_owned()),
        _ => None,
    };
    let source_text = ip_text(Some(source));
    let event = AuditEvent {
        kind,
        actor: Some(actor),
        source_ip: source_text.clone(),
        detail,
    };
    store::audit(tx, now, event)?;
    if let Some(reason) = locked {
        // The moment the account starts to wait: one alert, not one per refused try.
        let event = AuditEvent {
            kind: "account_locked",
            actor: Some(actor),
            source_ip: source_text,
            detail: Some(reason),
        };
        store::audit(tx, now, event)?;
    }
    Ok(kind)
}

/// A new session for `user`, who just proved password and code, with its audit rows (and a
/// `login_new_source` row the first time the user comes from that network). The caller marks
/// the source known to the connection tracker once this has committed.
pub fn open_session(
    tx: &Connection,
    user: &users::UserRow,
    ttl: Duration,
    source: IpAddr,
    now: i64,
) -> Result<LoginResponse> {
    let net = users::login_network(tx, user.id, source)?;
    users::reset_failures(tx, user.id, &net)?;
    let token = Token::generate();
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(ttl);
    let hash = secrets::token_hash(token.as_str());
    users::insert_session(tx, user.id, &hash, now, expires_at)?;
    let source_text = ip_text(Some(source));
    let event = AuditEvent {
        kind: "login_ok",
        actor: Some(&user.name),
        source_ip: source_text.clone(),
        detail: None,
    };
    store::audit(tx, now, event)?;
    let network = login_network(source);
    if users::record_login_source(tx, user.id, &network, now)? {
        let event = AuditEvent {
            kind: "login_new_source",
            actor: Some(&user.name),
            source_ip: source_text,
            detail: Some(format!("network={network}")),
        };
        store::audit(tx, now, event)?;
    }
    Ok(LoginResponse {
        token: token.into_string(),
        expires_at,
    })
}
