//! Signing up, logging in, and the signed-in user's profile.

use taskflow_core::{Email, Password, Timezone, User, UserId, UserName, ValidationErrors};

use crate::{
    App, AppError,
    auth::{hash_password, verify_password},
};

/// A validated signup.
#[derive(Debug)]
pub struct Signup {
    pub email: Email,
    pub password: Password,
    pub name: UserName,
    pub timezone: Timezone,
}

/// A validated profile change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProfilePatch {
    pub name: Option<UserName>,
    pub timezone: Option<Timezone>,
}

impl App {
    /// Registers a user and returns them with a token.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn signup(&self, signup: Signup) -> Result<(User, String), AppError> {
        let user = User {
            id: UserId::new(),
            email: signup.email,
            name: signup.name,
            timezone: signup.timezone,
            created_at: self.clock.now(),
        };
        let hash = hash_password(signup.password.expose().to_owned()).await?;
        self.store.insert_user(&user, &hash).await?;
        let token = self.tokens.issue(user.id, self.clock.now())?;
        tracing::info!(user_id = %user.id, "user signed up");
        Ok((user, token))
    }

    /// Logs in; a wrong email and a wrong password get the same answer.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn login(&self, email: &str, password: String) -> Result<(User, String), AppError> {
        const WRONG: &str = "wrong email or password";
        let found = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(&email).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some(u) => (Some(u.user), Some(u.password_hash)),
            None => (None, None),
        };
        if !verify_password(password, hash).await? {
            return Err(AppError::Unauthorized(WRONG));
        }
        let user = user.ok_or(AppError::Unauthorized(WRONG))?;
        let token = self.tokens.issue(user.id, self.clock.now())?;
        Ok((user, token))
    }

    /// The user a token was issued to; a token of a deleted user is refused.
    pub async fn authenticate(&self, token: &str) -> Result<User, AppError> {
        let id = self.tokens.verify(token)?;
        self.store
            .user(id)
            .await?
            .ok_or(AppError::Unauthorized("the token's user no longer exists"))
    }

    pub async fn user(&self, id: UserId) -> Result<User, AppError> {
        self.store.user(id).await?.ok_or(AppError::NotFound)
    }

    #[tracing::instrument(skip_all, fields(user_id = %user.id), err(level = "debug"))]
    pub async fn update_profile(
        &self,
        mut user: User,
        patch: ProfilePatch,
    ) -> Result<User, AppError> {
        if let Some(name) = patch.name {
            user.name = name;
        }
        if let Some(tz) = patch.timezone {
            user.timezone = tz;
        }
        self.store.update_user(&user).await?;
        Ok(user)
    }
}

impl Signup {
    /// Validates every field, reporting all problems at once.
    pub fn parse(
        email: &str,
        password: String,
        name: Option<&str>,
        timezone: Option<&str>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let email = errors.check("email", Email::parse(email));
        let password = errors.check("password", Password::parse(password));
        let name = errors.check("name", UserName::parse(name.unwrap_or("")));
        let timezone = errors.check(
            "timezone",
            timezone.map_or(Ok(Timezone::default()), Timezone::parse),
        );
        match (email, password, name, timezone) {
            (Some(email), Some(password), Some(name), Some(timezone)) if errors.is_empty() => {
                Ok(Self {
                    email,
                    password,
                    name,
                    timezone,
                })
            }
            _ => Err(errors),
        }
    }
}
