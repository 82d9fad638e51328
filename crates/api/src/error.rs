//! The one error shape every route answers with.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ErrorDetail {
    /// The code as this version of the API knows it; `None` for a code a
    /// newer server added (its `message` still says what went wrong).
    pub fn known_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident => $text:literal,)*) => {
        /// Every `code` the API answers with. On the wire it stays a string
        /// (`ErrorDetail::code`), so a client older than the server still
        /// reads the error; in code it is this enum on both ends.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                }
            }
        }
    };
}

error_codes! {
    // Any route.
    /// The body, a parameter or a field is not what the route takes.
    BadRequest => "bad_request",
    /// No session or API token, or an expired or revoked one.
    Unauthenticated => "unauthenticated",
    /// The caller's role may not do this here.
    Forbidden => "forbidden",
    /// No such object in the caller's scope (a foreign tenant's too).
    NotFound => "not_found",
    MethodNotAllowed => "method_not_allowed",
    /// The change conflicts with the current state (a taken name, a job
    /// already decided).
    Conflict => "conflict",
    TooLarge => "too_large",
    UnsupportedMediaType => "unsupported_media_type",
    TooManyRequests => "too_many_requests",
    /// A server-side failure; the message carries an id for the server log.
    Internal => "internal",
    /// A cookie-authenticated write without the CSRF token, or from a
    /// foreign origin.
    Csrf => "csrf",
    // Signing in, step-up and passkeys.
    /// Username, password or one-time code wrong (never says which).
    LoginFailed => "login_failed",
    /// This action needs a fresh MFA check: step up and retry.
    StepUpRequired => "step_up_required",
    StepUpFailed => "step_up_failed",
    /// The account's role requires a passkey.
    PasskeyRequired => "passkey_required",
    /// The passkey's answer did not verify.
    PasskeyRejected => "passkey_rejected",
    /// This server has no relying party id (no hostname), so no passkeys.
    PasskeysUnavailable => "passkeys_unavailable",
    /// Too many wrong codes for the CLI sign-in: wait.
    TooManyAttempts => "too_many_attempts",
    /// The setup code `bulwark up` printed is wrong or used.
    BadSetupCode => "bad_setup_code",
    // Trust statements and jobs.
    /// A statement or job the agents' own checks refuse (the message says
    /// which check).
    Refused => "refused",
    /// The tenant has no trust root yet: `bulwark tenant init` first.
    NoTrustRoot => "no_trust_root",
    /// The tenant has no policy yet.
    NoPolicy => "no_policy",
    /// The stored trust statements no longer verify: the history was
    /// tampered with.
    TrustBroken => "trust_broken",
    /// A root rotation that would leave the tenant's policy or freeze
    /// signed by nobody in the new root.
    RotationOrphansTrust => "rotation_orphans_trust",
    // The logs.
    /// The entries asked for are archived (410).
    Archived => "archived",
}

impl ErrorCode {
    /// The code named `text`, if this version knows it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == text)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} named twice");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
        let newer = ErrorDetail {
            code: "quota_exceeded".to_owned(),
            message: "a newer server's refusal".to_owned(),
        };
        assert_eq!(newer.known_code(), None, "an unknown code is not guessed");
    }
}
