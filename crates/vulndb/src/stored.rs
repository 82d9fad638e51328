//! The compact text in which the store keeps one package entry's ranges and
//! listed versions (`vulndb_affected.ranges`): matching needs dpkg's
//! ordering, which SQL has not, so the store finds rows by ecosystem and
//! package and this module turns them back into [`Affected`] for
//! [`crate::matching::affects`].
//!
//! Form: `{"r":[[["i","0"],["f","3.0.15-1~deb12u1"]]],"v":["1.0-1"]}`;
//! event kinds `i` (introduced), `f` (fixed), `l` (last_affected).

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::osv::{Affected, Event};
use crate::version::Version;

#[derive(Serialize, Deserialize)]
struct Stored {
    r: Vec<Vec<(String, String)>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    v: Vec<String>,
}

/// The stored text of `affected`'s ranges and versions.
pub fn encode(affected: &Affected) -> String {
    let r = affected
        .ranges
        .iter()
        .map(|range| {
            range
                .iter()
                .map(|e| match e {
                    Event::IntroducedZero => ("i".to_owned(), "0".to_owned()),
                    Event::Introduced(v) => ("i".to_owned(), v.to_string()),
                    Event::Fixed(v) => ("f".to_owned(), v.to_string()),
                    Event::LastAffected(v) => ("l".to_owned(), v.to_string()),
                })
                .collect()
        })
        .collect();
    let v = affected.versions.iter().map(Version::to_string).collect();
    // Strings and lists of strings always serialise.
    serde_json::to_string(&Stored { r, v }).unwrap_or_default()
}

/// Ranges and versions read back from [`encode`]'s text; `ecosystem`,
/// `package` and the severity come from their own columns.
pub fn decode(ecosystem: &str, package: &str, text: &str) -> Result<Affected, Error> {
    let stored: Stored = serde_json::from_str(text).map_err(|e| Error::Stored(e.to_string()))?;
    let mut ranges = Vec::with_capacity(stored.r.len());
    for range in stored.r {
        let mut events = Vec::with_capacity(range.len());
        for (kind, v) in range {
            events.push(match (kind.as_str(), v.as_str()) {
                ("i", "0") => Event::IntroducedZero,
                ("i", v) => Event::Introduced(Version::parse(v)?),
                ("f", v) => Event::Fixed(Version::parse(v)?),
                ("l", v) => Event::LastAffected(Version::parse(v)?),
                _ => return Err(Error::Stored(format!("unknown event kind {kind:?}"))),
            });
        }
        ranges.push(events);
    }
    let versions = stored
        .v
        .iter()
        .map(|v| Version::parse(v))
        .collect::<Result<_, _>>()?;
    Ok(Affected {
        ecosystem: ecosystem.to_owned(),
        package: package.to_owned(),
        ranges,
        versions,
        severity: None,
    })
}
