//! Third-party code the console serves itself: the xterm.js terminal
//! emulator (`@xterm/xterm` from the npm registry) that plays shell
//! recordings back. Served from here, never from a CDN, so the
//! Content-Security-Policy stays `script-src 'self'; style-src 'self'`.
//!
//! The files are npm's bytes, unchanged; `assets/vendor/xterm/VENDORED`
//! records the version, npm's integrity hash of the tarball and each
//! file's SHA-256, and the test below holds the embedded bytes to them.
//! The version is in the path, so the files can be cached for a year.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

/// The version in `VENDORED`, and in the files' paths.
pub(super) const XTERM_VERSION: &str = "6.0.0";
pub(super) const XTERM_JS: &str = "/assets/vendor/xterm-6.0.0/xterm.js";
pub(super) const XTERM_CSS: &str = "/assets/vendor/xterm-6.0.0/xterm.css";
pub(super) const XTERM_LICENSE: &str = "/assets/vendor/xterm-6.0.0/LICENSE";

const XTERM_JS_BYTES: &str = include_str!("../../assets/vendor/xterm/xterm.js");
const XTERM_CSS_BYTES: &str = include_str!("../../assets/vendor/xterm/xterm.css");
const XTERM_LICENSE_BYTES: &str = include_str!("../../assets/vendor/xterm/LICENSE");

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            XTERM_JS,
            get(|| immutable("text/javascript; charset=utf-8", XTERM_JS_BYTES)),
        )
        .route(
            XTERM_CSS,
            get(|| immutable("text/css; charset=utf-8", XTERM_CSS_BYTES)),
        )
        .route(
            XTERM_LICENSE,
            get(|| immutable("text/plain; charset=utf-8", XTERM_LICENSE_BYTES)),
        )
}

/// A file whose path changes with its content: cached for a year.
async fn immutable(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    const VENDORED: &str = include_str!("../../assets/vendor/xterm/VENDORED");

    fn recorded(key: &str) -> Option<&'static str> {
        VENDORED.lines().find_map(|line| {
            let (k, v) = line.split_once(" = ")?;
            (k.trim() == key).then(|| v.trim())
        })
    }

    /// `file NAME = SOURCE sha256 HEX` → HEX.
    fn recorded_sha256(name: &str) -> &'static str {
        let line = recorded(&format!("file {name}")).expect("recorded in VENDORED");
        line.rsplit_once(" sha256 ").expect("a sha256").1
    }

    #[test]
    fn vendored_files_are_npms_bytes_as_recorded() {
        assert_eq!(recorded("package"), Some("@xterm/xterm"));
        assert_eq!(recorded("version"), Some(XTERM_VERSION));
        assert!(
            recorded("integrity").is_some_and(|i| i.starts_with("sha512-")),
            "npm's integrity of the tarball is recorded"
        );
        for (name, bytes) in [
            ("xterm.js", XTERM_JS_BYTES),
            ("xterm.css", XTERM_CSS_BYTES),
            ("LICENSE", XTERM_LICENSE_BYTES),
        ] {
            assert_eq!(
                hex::encode(Sha256::digest(bytes.as_bytes())),
                recorded_sha256(name),
                "{name} differs from the file npm served (VENDORED): vendor it again, do not edit it"
            );
        }
        for path in [XTERM_JS, XTERM_CSS, XTERM_LICENSE] {
            assert!(path.contains(&format!("/xterm-{XTERM_VERSION}/")), "{path}");
        }
    }

    #[test]
    fn the_terminal_needs_no_eval() {
        // `script-src 'self'` without 'unsafe-eval': it would fail at run time.
        for needle in ["eval(", "new Function(", "Function(\""] {
            assert!(!XTERM_JS_BYTES.contains(needle), "xterm.js calls {needle}");
        }
    }
}
