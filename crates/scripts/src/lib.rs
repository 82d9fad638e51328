//! The script library's pure part (issue 15, RFD 0013): what a library
//! script version is, the statements its author and its reviewer sign, and
//! how typed parameters become signed script bytes.
//!
//! Nothing here is on the agent's trust path: an agent only ever sees a
//! `RunScript` job whose body hashes to its signed hash (RFD 0002). This
//! crate is what the operator's `bulwark` checks before it signs such a job
//! (the version's content hashes to the hash its author and reviewer
//! signed, the reviewer is an operator of the tenant's verified policy and
//! not the author) and what the server checks before it stores a review
//! (the same statement, the caller's own key, not the author). No I/O, no
//! clock, no serde.

use bulwark_policy::envelope::{Signed, Statement};
use bulwark_policy::policy::ScriptHash;
use bulwark_policy::{Interpreter, KeyId, PublicKey};
use minicbor::{Decode, Encode};
use sha2::{Digest, Sha256};

/// Every cap of the script library, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A script's name: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
    pub max_name_chars: usize,
    /// A script's description, in characters.
    pub max_description_chars: usize,
    /// A version's content, in bytes (the job submission's own cap).
    pub max_content_bytes: usize,
    /// Parameters of one version.
    pub max_params: usize,
    /// A parameter's name, in characters.
    pub max_param_name_chars: usize,
    /// Choices of one `choice` parameter.
    pub max_choices: usize,
    /// One choice, in characters.
    pub max_choice_chars: usize,
    /// A parameter value, in characters.
    pub max_value_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_name_chars: 64,
            max_description_chars: 1_000,
            max_content_bytes: 256 * 1024,
            max_params: 16,
            max_param_name_chars: 32,
            max_choices: 32,
            max_choice_chars: 64,
            max_value_chars: 1_024,
        }
    }
}

/// Why a name, a schema, a statement or a value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    #[error("{0}")]
    Invalid(String),
    #[error("parameter {name}: {reason}")]
    BadValue { name: String, reason: String },
    #[error("the signed statement does not match the version: {0}")]
    Mismatch(&'static str),
    #[error("the statement is not a script version statement: {0}")]
    Malformed(String),
}

fn invalid(text: impl Into<String>) -> ScriptError {
    ScriptError::Invalid(text.into())
}

/// Checks a script's name: 1 to 64 of `a-z 0-9 . _ -`, first a letter or digit
/// (so it is one URL path segment and one shell word as it is).
pub fn check_name(name: &str, limits: &Limits) -> Result<(), ScriptError> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_first
        || name.chars().count() > limits.max_name_chars
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(format!(
            "script name {name:?}: 1 to {} of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
            limits.max_name_chars
        )));
    }
    Ok(())
}

/// Checks a description: at most the cap, no control characters but newlines.
pub fn check_description(text: &str, limits: &Limits) -> Result<(), ScriptError> {
    if text.chars().count() > limits.max_description_chars
        || text.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(invalid(format!(
            "the description: at most {} characters, no control characters but newlines",
            limits.max_description_chars
        )));
    }
    Ok(())
}

/// Checks a version's content: UTF-8 text (it is shown to reviewers and
/// approvers), no NUL, within the cap, not empty.
pub fn check_content(content: &str, limits: &Limits) -> Result<(), ScriptError> {
    if content.is_empty() || content.len() > limits.max_content_bytes || content.contains('\0') {
        return Err(invalid(format!(
            "the script: 1 to {} bytes of text without NUL",
            limits.max_content_bytes
        )));
    }
    Ok(())
}

/// SHA-256 of a script's bytes: what the allow-list and job statements name.
pub fn content_hash(content: &str) -> ScriptHash {
    ScriptHash(Sha256::digest(content.as_bytes()).into())
}

/// A parameter's type.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ParamType {
    #[n(0)]
    String,
    /// A signed 64-bit integer in plain decimal.
    #[n(1)]
    Int,
    /// `true` or `false`.
    #[n(2)]
    Bool,
    /// One of the listed words.
    #[n(3)]
    Choice(#[n(0)] Vec<String>),
}

/// A typed parameter of a version, written `name:type` (`count:int`,
/// `mode:choice=fast|safe`).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct ParamSpec {
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub kind: ParamType,
}

/// Python's keywords and soft keywords: a parameter cannot be named one,
/// since python3 scripts get `name = value` lines.
const PYTHON_KEYWORDS: &[&str] = &[
    "false", "none", "true", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "match", "case", "type", "_",
];

fn check_choice(word: &str, limits: &Limits) -> Result<(), ScriptError> {
    if word.is_empty()
        || word.chars().count() > limits.max_choice_chars
        || !word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(format!(
            "choice {word:?}: 1 to {} of A-Z, a-z, 0-9, '.', '_' and '-'",
            limits.max_choice_chars
        )));
    }
    Ok(())
}

impl ParamSpec {
    /// Parses `name:string|int|bool` or `name:choice=a|b|c`. Names are
    /// lower-case identifiers (so no parameter can set `PATH` or `IFS`),
    /// and not a Python keyword.
    pub fn parse(text: &str, limits: &Limits) -> Result<ParamSpec, ScriptError> {
        let (name, kind) = text
            .split_once(':')
            .ok_or_else(|| invalid(format!("parameter {text:?}: write name:type")))?;
        let name_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name.chars().count() <= limits.max_param_name_chars
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !PYTHON_KEYWORDS.contains(&name);
        if !name_ok {
            return Err(invalid(format!(
                "parameter name {name:?}: 1 to {} of a-z, 0-9 and '_', not starting with a digit, not a Python keyword",
                limits.max_param_name_chars
            )));
        }
        let kind = match kind {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "bool" => ParamType::Bool,
            other => {
                let Some(words) = other.strip_prefix("choice=") else {
                    return Err(invalid(format!(
                        "parameter {name}: type {other:?} is not string, int, bool or choice=a|b"
                    )));
                };
                let words: Vec<String> = words.split('|').map(str::to_owned).collect();
                if words.len() > limits.max_choices {
                    return Err(invalid(format!(
                        "parameter {name}: at most {} choices",
                        limits.max_choices
                    )));
                }
                for (i, word) in words.iter().enumerate() {
                    check_choice(word, limits)?;
                    if words[..i].contains(word) {
                        return Err(invalid(format!("parameter {name}: choice {word} twice")));
                    }
                }
                ParamType::Choice(words)
            }
        };
        Ok(ParamSpec {
            name: name.to_owned(),
            kind,
        })
    }

    /// The `name:type` text [`Self::parse`] reads back.
    pub fn to_text(&self) -> String {
        let kind = match &self.kind {
            ParamType::String => "string".to_owned(),
            ParamType::Int => "int".to_owned(),
            ParamType::Bool => "bool".to_owned(),
            ParamType::Choice(words) => format!("choice={}", words.join("|")),
        };
        format!("{}:{kind}", self.name)
    }

    /// Checks one value against this parameter's type.
    pub fn check_value(&self, value: &str, limits: &Limits) -> Result<(), ScriptError> {
        let bad = |reason: String| ScriptError::BadValue {
            name: self.name.clone(),
            reason,
        };
        if value.chars().count() > limits.max_value_chars || value.chars().any(char::is_control) {
            return Err(bad(format!(
                "at most {} characters, no control characters",
                limits.max_value_chars
            )));
        }
        match &self.kind {
            ParamType::String => Ok(()),
            ParamType::Int => {
                // Plain decimal only: the text signed is the text the script reads.
                let canonical = value.parse::<i64>().ok().map(|n| n.to_string());
                if canonical.as_deref() == Some(value) {
                    Ok(())
                } else {
                    Err(bad(format!("{value:?} is not a plain decimal integer")))
                }
            }
            ParamType::Bool if matches!(value, "true" | "false") => Ok(()),
            ParamType::Bool => Err(bad(format!("{value:?} is not true or false"))),
            ParamType::Choice(words) if words.iter().any(|w| w == value) => Ok(()),
            ParamType::Choice(words) => {
                Err(bad(format!("{value:?} is not one of {}", words.join(", "))))
            }
        }
    }
}

/// Parses a version's parameter list (`name:type` each): within the cap,
/// each name once.
pub fn parse_params<S: AsRef<str>>(
    texts: &[S],
    limits: &Limits,
) -> Result<Vec<ParamSpec>, ScriptError> {
    if texts.len() > limits.max_params {
        return Err(invalid(format!("at most {} parameters", limits.max_params)));
    }
    let mut specs: Vec<ParamSpec> = Vec::with_capacity(texts.len());
    for text in texts {
        let spec = ParamSpec::parse(text.as_ref(), limits)?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(invalid(format!("parameter {} twice", spec.name)));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Parses `name=value` as the CLI's `--param` gives it.
pub fn parse_assignment(text: &str) -> Result<(String, String), ScriptError> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| invalid(format!("--param {text:?}: write name=value")))?;
    Ok((name.to_owned(), value.to_owned()))
}

/// POSIX shell single quoting: the value is one word, never expanded.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A Python 3 string literal for `value` (which holds no control characters).
fn python_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() || !c.is_ascii() => {
                out.push_str(&format!("\\U{:08x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The script a job signs for a library version run with `values`: the
/// content as it is when the version has no parameters (so its hash is the
/// version's, and an allow-listed version stays allow-listed), else a
/// prelude assigning every parameter, then the content. Every parameter
/// needs a value, each once, each valid for its type; an unknown name is
/// refused. The prelude is part of the signed bytes: the server cannot
/// change a value without breaking the job's hash.
pub fn script_with_params(
    interpreter: Interpreter,
    specs: &[ParamSpec],
    values: &[(String, String)],
    content: &str,
    limits: &Limits,
) -> Result<String, ScriptError> {
    for (i, (name, _)) in values.iter().enumerate() {
        if !specs.iter().any(|s| &s.name == name) {
            return Err(invalid(format!(
                "this version has no parameter {name:?} (it has: {})",
                specs
                    .iter()
                    .map(ParamSpec::to_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if values[..i].iter().any(|(n, _)| n == name) {
            return Err(invalid(format!("parameter {name} given twice")));
        }
    }
    if specs.is_empty() {
        return Ok(content.to_owned());
    }
    // A comment line in sh, bash and python3 alike.
    let mut prelude = String::from("# Parameters (bulwark script library)\n");
    for spec in specs {
        let value = values
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| ScriptError::BadValue {
                name: spec.name.clone(),
                reason: "no value given (--param name=value)".into(),
            })?;
        spec.check_value(value, limits)?;
        let line = match (interpreter, &spec.kind) {
            (Interpreter::Python3, ParamType::Int) => format!("{} = {value}\n", spec.name),
            (Interpreter::Python3, ParamType::Bool) => format!(
                "{} = {}\n",
                spec.name,
                if value == "true" { "True" } else { "False" }
            ),
            (Interpreter::Python3, _) => format!("{} = {}\n", spec.name, python_quote(value)),
            (Interpreter::Sh | Interpreter::Bash, _) => {
                format!("{}={}\n", spec.name, sh_quote(value))
            }
        };
        prelude.push_str(&line);
    }
    prelude.push_str("# End of parameters\n");
    Ok(prelude + content)
}

/// Who signs a version statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum SignerRole {
    /// The operator who added the version.
    #[n(0)]
    Author,
    /// An operator who read it and vouches for it.
    #[n(1)]
    Reviewer,
}

/// What an author or a reviewer signs about one version: every field a
/// job run from it depends on. Signed with the operator's job-signing key,
/// under its own payload type, so it can never verify as a job.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct VersionStatement {
    #[n(0)]
    pub name: String,
    #[n(1)]
    pub version: u32,
    #[n(2)]
    pub content_sha256: ScriptHash,
    #[n(3)]
    pub interpreter: Interpreter,
    #[n(4)]
    pub params: Vec<ParamSpec>,
    #[n(5)]
    pub role: SignerRole,
}

impl Statement for VersionStatement {
    const PAYLOAD_TYPE: &'static str = "application/vnd.bulwark.script-version.v1+cbor";
}

/// A version as the server describes it, to be compared with what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFacts<'a> {
    pub name: &'a str,
    pub version: u32,
    pub content: &'a str,
    pub interpreter: Interpreter,
    pub params: &'a [ParamSpec],
}

impl VersionFacts<'_> {
    /// The statement a signer in `role` signs for these facts.
    pub fn statement(&self, role: SignerRole) -> VersionStatement {
        VersionStatement {
            name: self.name.to_owned(),
            version: self.version,
            content_sha256: content_hash(self.content),
            interpreter: self.interpreter,
            params: self.params.to_vec(),
            role,
        }
    }
}

/// Decodes a signed version statement and checks it says exactly `facts`
/// in `role`, with exactly one signature. Says nothing about whose key.
pub fn open_statement(
    signed: &Signed,
    facts: &VersionFacts<'_>,
    role: SignerRole,
) -> Result<KeyId, ScriptError> {
    let statement: VersionStatement = signed
        .statement(&bulwark_policy::Limits::default())
        .map_err(|e| ScriptError::Malformed(e.to_string()))?;
    // 1. One signature: a statement names one author or one reviewer.
    let [entry] = signed.signatures.as_slice() else {
        return Err(ScriptError::Malformed(format!(
            "{} signatures, expected one",
            signed.signatures.len()
        )));
    };
    // 2. Every field the job depends on is the version's.
    if statement.role != role {
        return Err(ScriptError::Mismatch("role"));
    }
    if statement.name != facts.name {
        return Err(ScriptError::Mismatch("name"));
    }
    if statement.version != facts.version {
        return Err(ScriptError::Mismatch("version"));
    }
    if statement.content_sha256 != content_hash(facts.content) {
        return Err(ScriptError::Mismatch("content sha256"));
    }
    if statement.interpreter != facts.interpreter {
        return Err(ScriptError::Mismatch("interpreter"));
    }
    if statement.params != facts.params {
        return Err(ScriptError::Mismatch("parameters"));
    }
    Ok(entry.key_id)
}

/// Which of `keys` (name, key) made the envelope's signature, if any
/// verifies: counted by the one tally of `bulwark_policy`.
pub fn signer_among<'k, N>(signed: &Signed, keys: &'k [(N, PublicKey)]) -> Option<&'k N> {
    keys.iter()
        .find(|(_, key)| !signed.tally(std::iter::once(key)).valid.is_empty())
        .map(|(name, _)| name)
}

/// Hex of a content hash, as people and the API see it.
pub fn hash_hex(hash: &ScriptHash) -> String {
    hex::encode(hash.0)
}

/// Entry points for `cargo fuzz` (fuzz/fuzz_targets/script_params.rs).
#[cfg(fuzzing)]
pub mod fuzzing {
    use super::*;

    /// Parses a schema and assignments from arbitrary text and renders the
    /// prelude; must never panic, and a rendered sh prelude must keep every
    /// value inside its quotes.
    pub fn params(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let limits = Limits::default();
        let mut lines = text.split('\n');
        let schema: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .collect();
        let Ok(specs) = parse_params(&schema, &limits) else {
            return;
        };
        let values: Vec<(String, String)> =
            lines.filter_map(|l| parse_assignment(l).ok()).collect();
        for interpreter in Interpreter::ALL {
            let _ = script_with_params(interpreter, &specs, &values, "true\n", &limits);
        }
    }
}

#[cfg(test)]
mod tests;
