//! Passwords (argon2id) and signed, expiring bearer tokens (HS256).

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock, mpsc},
    time::Duration,
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use taskflow_core::UserId;
use taskflow_store::{Cursor, Order, SettingStore, SortBy};

use crate::AppError;

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
}

/// How tokens are signed.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The HMAC secret; when `None` one is generated on first start and kept in the database.
    pub secret: Option<SecretString>,
    pub ttl: Duration,
}

/// Issues and checks tokens.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Keys>,
}

struct Keys {
    /// Signs pagination cursors; derived from the token secret, so it is as stable.
    cursor: Hmac<Sha256>,
    /// Makes pseudonyms ([`Tokens::pseudonym`]); derived from the token secret too.
    pseudonym: Hmac<Sha256>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

const SECRET_SETTING: &str = "jwt_secret";

impl Tokens {
    /// Signs with the configured secret, or the one kept in `settings` (made on first start).
    pub async fn load(settings: &dyn SettingStore, config: &TokenConfig) -> Result<Self, AppError> {
        let secret = match &config.secret {
            Some(s) => s.expose_secret().to_owned(),
            None => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                settings
                    .setting_or_insert(SECRET_SETTING, &STANDARD.encode(bytes))
                    .await?
            }
        };
        Ok(Self::from_secret(secret.as_bytes(), config.ttl))
    }

    pub fn from_secret(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        Self {
            inner: Arc::new(Keys {
                cursor: derived_key(secret, b"taskflow pagination cursor v1"),
                pseudonym: derived_key(secret, b"taskflow pseudonym v1"),
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                ttl,
            }),
        }
    }

    /// A token for `user`, valid from `now` for the configured time.
    pub fn issue(
        &self,
        user: UserId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, AppError> {
        let ttl = i64::try_from(self.inner.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: user.to_string(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .map_err(|e| AppError::Internal(format!("signing a token: {e}")))
    }

    /// The user a valid, unexpired token was issued to.
    pub fn verify(&self, token: &str) -> Result<UserId, AppError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        AppError::Unauthorized("the token has expired; log in again")
                    }
                    _ => AppError::Unauthorized("the token is not valid"),
                })?;
        data.claims
            .sub
            .parse()
            .map(UserId)
            .map_err(|_| AppError::Unauthorized("the token is not valid"))
    }
}

/// A key for one purpose: HMAC-SHA256 of a fixed label under the token secret.
fn derived_key(secret: &[u8], label: &[u8]) -> Hmac<Sha256> {
    let mut derive = hmac(secret);
    derive.update(label);
    hmac(&derive.finalize().into_bytes())
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes a key of any length"),
    }
}

impl Tokens {
    /// A stable stand-in for `value` (an email address, say) where it is named outside the
    /// database, as in the key of a shared state store: the same on every instance that
    /// shares the token secret, and not reversible without it.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = self.inner.pseudonym.clone();
        mac.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..PSEUDONYM_BYTES])
    }
}

/// Bytes of the cursor's signature kept (128 bits).
const CURSOR_TAG: usize = 16;
/// Bytes of the HMAC a pseudonym keeps (128 bits).
const PSEUDONYM_BYTES: usize = 16;

impl Tokens {
    /// `cursor` as the opaque, tamper-evident string clients get: `<payload>.<signature>`.
    pub fn seal_cursor(&self, cursor: &Cursor) -> String {
        let payload = cursor.encode();
        let mut mac = self.inner.cursor.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..CURSOR_TAG]))
    }

    /// The cursor in a string [`Self::seal_cursor`] made, for a query with this sort and
    /// order; anything else is refused.
    pub fn open_cursor(&self, raw: &str, sort: SortBy, order: Order) -> Result<Cursor, AppError> {
        const FORGED: &str = "not a cursor this server issued; start again without it";
        let (payload, tag) = raw
            .trim()
            .split_once('.')
            .ok_or_else(|| AppError::InvalidCursor(FORGED.into()))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .ok()
            .filter(|t| t.len() == CURSOR_TAG)
            .ok_or_else(|| AppError::InvalidCursor(FORGED.into()))?;
        let mut mac = self.inner.cursor.clone();
        mac.update(payload.as_bytes());
        mac.verify_truncated_left(&tag)
            .map_err(|_| AppError::InvalidCursor(FORGED.into()))?;
        Ok(Cursor::decode(payload, sort, order)?)
    }
}

/// Argon2 runs on a few threads of its own, as many as there are cores, fed by a short
/// queue: a flood of signups or logins waits its turn or is told to come back (503 with
/// `Retry-After`), instead of filling the blocking pool with hundreds of threads that each
/// hold argon2's 19 MiB and starve every other request of CPU.
struct HashPool {
    jobs: mpsc::SyncSender<Box<dyn FnOnce() + Send>>,
}

impl HashPool {
    /// Jobs that may wait per hashing thread; beyond that the caller is turned away.
    const QUEUE_PER_THREAD: usize = 4;

    fn get() -> &'static HashPool {
        static POOL: OnceLock<HashPool> = OnceLock::new();
        POOL.get_or_init(|| {
            let threads = std::thread::available_parallelism().map_or(2, usize::from);
            Self::start(threads, threads * Self::QUEUE_PER_THREAD)
        })
    }

    fn start(threads: usize, queue: usize) -> Self {
        let (jobs, rx) = mpsc::sync_channel::<Box<dyn FnOnce() + Send>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self { jobs }
    }

    /// Runs `work` on the pool, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => {
                    metrics::counter!("taskflow_password_hashing_refused_total").increment(1);
                    AppError::Busy(Duration::from_secs(1))
                }
                mpsc::TrySendError::Disconnected(_) => {
                    AppError::Internal("the password hashing threads are gone".into())
                }
            })?;
        rx.await
            .map_err(|_| AppError::Internal("a password hashing job was lost".into()))
    }
}

/// Hashes a password with argon2id on the hashing threads (it is CPU-heavy by design).
pub(crate) async fn hash_password(password: String) -> Result<String, AppError> {
    HashPool::get()
        .run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AppError::Internal(format!("hashing a password: {e}")))
        })
        .await?
}

/// Checks a password against a stored hash on the hashing threads. Without a hash (unknown
/// user) it still does the work, so both failures take as long.
pub(crate) async fn verify_password(
    password: String,
    hash: Option<String>,
) -> Result<bool, AppError> {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5n6BZ5tNDs0oqUP3aVqZKGRoTcv3mMW8cO36hp1mZnU";
    HashPool::get()
        .run(move || {
            let known = hash.is_some();
            let stored = hash.unwrap_or_else(|| DUMMY.to_owned());
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| AppError::Internal(format!("stored hash: {e}")))?;
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(ok && known)
        })
        .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_until_it_expires() {
        let tokens = Tokens::from_secret(b"test-secret", Duration::from_secs(60));
        let user = UserId::new();
        let now = chrono::Utc::now();
        assert_eq!(
            tokens
                .verify(&tokens.issue(user, now).expect("signs"))
                .expect("valid"),
            user
        );
        let old = tokens
            .issue(user, now - chrono::TimeDelta::hours(1))
            .expect("signs");
        assert!(
            matches!(tokens.verify(&old), Err(AppError::Unauthorized(m)) if m.contains("expired"))
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_rejected() {
        let a = Tokens::from_secret(b"secret-a", Duration::from_secs(60));
        let b = Tokens::from_secret(b"secret-b", Duration::from_secs(60));
        let token = a.issue(UserId::new(), chrono::Utc::now()).expect("signs");
        assert!(b.verify(&token).is_err());
        assert!(a.verify("not.a.token").is_err());
    }

    #[test]
    fn a_cursor_opens_only_as_sealed_by_this_server() {
        use taskflow_store::CursorKey;
        let tokens = Tokens::from_secret(b"secret-a", Duration::from_secs(60));
        let c = Cursor {
            sort: SortBy::Due,
            order: Order::Asc,
            flag: 0,
            key: CursorKey::I64(42),
            number: 7,
        };
        let sealed = tokens.seal_cursor(&c);
        assert_eq!(
            tokens
                .open_cursor(&sealed, SortBy::Due, Order::Asc)
                .expect("opens"),
            c
        );
        // Another sort, another server, an edited payload, no signature: all refused.
        assert!(
            tokens
                .open_cursor(&sealed, SortBy::Title, Order::Asc)
                .is_err()
        );
        let other = Tokens::from_secret(b"secret-b", Duration::from_secs(60));
        assert!(other.open_cursor(&sealed, SortBy::Due, Order::Asc).is_err());
        let forged = Cursor {
            number: 1,
            ..c.clone()
        };
        let (_, tag) = sealed.split_once('.').expect("two parts");
        let edited = format!("{}.{tag}", forged.encode());
        assert!(
            tokens
                .open_cursor(&edited, SortBy::Due, Order::Asc)
                .is_err()
        );
        assert!(
            tokens
                .open_cursor(&c.encode(), SortBy::Due, Order::Asc)
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_full_hashing_queue_turns_work_away_at_once() {
        let pool: &'static HashPool = Box::leak(Box::new(HashPool::start(1, 1)));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let blocked = pool.run(move || {
            let _ = gate.recv();
        });
        let blocked = tokio::spawn(blocked);
        // One runs (blocked), one waits in the queue; the third is refused.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = tokio::spawn(pool.run(|| 2));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(pool.run(|| 3).await, Err(AppError::Busy(_))));
        release.send(()).expect("unblocks");
        blocked.await.expect("joins").expect("ran");
        assert_eq!(queued.await.expect("joins").expect("ran"), 2);
    }

    #[tokio::test]
    async fn a_password_verifies_against_its_argon2id_hash_only() {
        let hash = hash_password("correct horse".into()).await.expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .expect("runs")
        );
        assert!(
            !verify_password("wrong horse".into(), Some(hash))
                .await
                .expect("runs")
        );
        assert!(
            !verify_password("correct horse".into(), None)
                .await
                .expect("runs")
        );
    }
}
