//! The MSP's script library (RFD 0013): scripts, immutable versions with
//! their author's signed statement, and signed reviews.
//!
//! What the server says here is only what it says: the operator's
//! `bulwark` checks each version's content against the SHA-256 its author
//! and reviewers signed (the envelopes travel as exact bytes, base64), and
//! each signature against the operator keys of a tenant's verified policy,
//! before it signs a job from it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The program that runs a library script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScriptInterpreter {
    Sh,
    Bash,
    Python3,
}

impl ScriptInterpreter {
    pub fn name(self) -> &'static str {
        match self {
            ScriptInterpreter::Sh => "sh",
            ScriptInterpreter::Bash => "bash",
            ScriptInterpreter::Python3 => "python3",
        }
    }
}

/// A new script and its version 1.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptCreateRequest {
    /// 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit; unique.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", max_length = 64)]
    pub name: String,
    /// At most 1,000 characters, no control characters but newlines.
    #[schema(max_length = 1000)]
    pub description: String,
    pub interpreter: ScriptInterpreter,
    /// Typed parameters, `name:string|int|bool` or `name:choice=a|b`, at most 16.
    #[schema(max_items = 16)]
    pub params: Vec<String>,
    /// The script, UTF-8 text without NUL, 1 byte to 256 KiB.
    pub content: String,
    /// Base64 of the author's signed `VersionStatement` (role author, version
    /// 1) by one of the caller's registered signing keys.
    pub author_envelope: String,
}

/// The next version of a script.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptVersionRequest {
    /// The version number the author signed: the newest plus one.
    pub version: u32,
    pub interpreter: ScriptInterpreter,
    /// Typed parameters, `name:string|int|bool` or `name:choice=a|b`, at most 16.
    #[schema(max_items = 16)]
    pub params: Vec<String>,
    /// The script, UTF-8 text without NUL, 1 byte to 256 KiB.
    pub content: String,
    /// Base64 of the author's signed `VersionStatement` (role author) over
    /// exactly this name, version number, content hash, interpreter and
    /// parameters, by one of the caller's registered signing keys.
    pub author_envelope: String,
}

/// A review: base64 of the reviewer's signed `VersionStatement` (role
/// reviewer), by one of the caller's registered signing keys. The author
/// of a version cannot review it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptReviewRequest {
    pub envelope: String,
}

/// One script in the library list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScriptSummaryView {
    pub name: String,
    pub description: String,
    pub latest_version: u32,
    /// Reviews of the newest version, as the server counts them (unverified).
    pub latest_reviews: i64,
    pub created_at: String,
}

/// A review as stored: verify `envelope` yourself (`bulwark script show`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScriptReviewView {
    /// The reviewing account, as the server says.
    pub reviewer: String,
    /// Base64 of the signed statement.
    pub envelope: String,
    pub created_at: String,
}

/// One version, with its content when asked for one version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScriptVersionView {
    pub name: String,
    pub version: u32,
    pub interpreter: ScriptInterpreter,
    pub params: Vec<String>,
    /// Lowercase hex SHA-256 of the content, as the server says.
    pub sha256: String,
    /// The authoring account, as the server says.
    pub author: String,
    /// Base64 of the author's signed statement.
    pub author_envelope: String,
    pub created_at: String,
    pub reviews: Vec<ScriptReviewView>,
    /// The content (only in `GET .../versions/{version}`).
    pub content: Option<String>,
}

/// A script and all its versions, newest first, without their content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScriptView {
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub versions: Vec<ScriptVersionView>,
}
