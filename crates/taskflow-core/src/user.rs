//! Users: who owns tasks, and in which timezone their words are understood.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::error::ValidationErrors;

/// The id of a user.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, trimmed and lowercased; it identifies a user at login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let s = raw.trim().to_lowercase();
        let bad = |m: &str| Err(ValidationErrors::one("email", m));
        if s.is_empty() {
            return bad("is required");
        }
        if s.chars().count() > Self::MAX_LEN {
            return bad("must be at most 254 characters");
        }
        let Some((local, domain)) = s.split_once('@') else {
            return bad("must be an email address like name@example.com");
        };
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return bad("must be an email address like name@example.com");
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed at signup: 8 to 1024 characters.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 1024;

    pub fn parse(raw: String) -> Result<Self, ValidationErrors> {
        let n = raw.chars().count();
        if n < Self::MIN_LEN {
            return Err(ValidationErrors::one(
                "password",
                "must be at least 8 characters",
            ));
        }
        if n > Self::MAX_LEN {
            return Err(ValidationErrors::one(
                "password",
                "must be at most 1024 characters",
            ));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A display name: up to 100 characters, trimmed; may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        let s = raw.trim();
        if s.chars().count() > Self::MAX_LEN {
            return Err(ValidationErrors::one(
                "name",
                "must be at most 100 characters",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(ValidationErrors::one(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IANA timezone such as `Europe/Paris`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timezone(chrono_tz::Tz);

impl Timezone {
    pub fn parse(raw: &str) -> Result<Self, ValidationErrors> {
        chrono_tz::Tz::from_str(raw.trim()).map(Self).map_err(|_| {
            ValidationErrors::one(
                "timezone",
                format!("`{raw}` is not an IANA timezone name such as Europe/Paris"),
            )
        })
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl Default for Timezone {
    fn default() -> Self {
        Self(chrono_tz::UTC)
    }
}

impl Serialize for Timezone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A registered user.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: UserName,
    pub timezone: Timezone,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_trimmed_and_lowercased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").expect("valid").as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn an_email_without_at_sign_or_domain_is_rejected() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn a_password_shorter_than_8_characters_is_rejected() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
    }

    #[test]
    fn a_password_is_never_printed() {
        let p = Password::parse("supersecret".into()).expect("valid");
        assert!(!format!("{p:?}").contains("supersecret"));
    }

    #[test]
    fn a_timezone_must_be_an_iana_name() {
        assert_eq!(
            Timezone::parse("America/New_York").expect("valid").name(),
            "America/New_York"
        );
        assert!(Timezone::parse("Mars/Olympus").is_err());
        assert!(Timezone::parse("").is_err());
    }

    #[test]
    fn a_name_longer_than_100_characters_is_rejected() {
        assert!(UserName::parse(&"x".repeat(101)).is_err());
        assert_eq!(UserName::parse("  Ada ").expect("valid").as_str(), "Ada");
    }
}
