//! Passwords (argon2id) and signed, expiring bearer tokens (HS256).

use std::{fmt, sync::Arc, time::Duration};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use taskflow_core::UserId;
use taskflow_store::SettingStore;

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

/// Hashes a password with argon2id on the blocking pool (it is CPU-heavy by design).
pub(crate) async fn hash_password(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?
}

/// Checks a password against a stored hash on the blocking pool. Without a hash (unknown
/// user) it still does the work, so both failures take as long.
pub(crate) async fn verify_password(
    password: String,
    hash: Option<String>,
) -> Result<bool, AppError> {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5n6BZ5tNDs0oqUP3aVqZKGRoTcv3mMW8cO36hp1mZnU";
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let stored = hash.unwrap_or_else(|| DUMMY.to_owned());
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| AppError::Internal(format!("stored hash: {e}")))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?
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
