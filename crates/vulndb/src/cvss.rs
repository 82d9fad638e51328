//! CVSS v3.0 and v3.1 base scores from a vector string, by the formula of
//! the specification (FIRST, "CVSS v3.1: Specification Document", §7.1 and
//! Appendix A for `Roundup`; v3.0 §8.1 rounds up to one decimal plainly).
//!
//! Only the base metrics count; temporal and environmental metrics are
//! accepted (each once) and ignored, as OSV's `CVSS_V3` scores are base
//! scores. CVSS v4 vectors are kept as text by the caller: their score
//! needs the specification's macro-vector tables, not a formula.

use std::fmt;

/// A qualitative severity (specification §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rating {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Rating {
    /// The rating of a base score (0.0 to 10.0).
    pub fn of(score: f64) -> Rating {
        match score {
            s if s <= 0.0 => Rating::None,
            s if s < 4.0 => Rating::Low,
            s if s < 7.0 => Rating::Medium,
            s if s < 9.0 => Rating::High,
            _ => Rating::Critical,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rating::None => "none",
            Rating::Low => "low",
            Rating::Medium => "medium",
            Rating::High => "high",
            Rating::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Rating> {
        [
            Rating::None,
            Rating::Low,
            Rating::Medium,
            Rating::High,
            Rating::Critical,
        ]
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Rating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a vector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CvssError {
    #[error("not a CVSS:3.0 or CVSS:3.1 vector")]
    NotV3,
    #[error("metric {0} is unknown or malformed")]
    BadMetric(String),
    #[error("metric {0} appears twice")]
    Duplicate(String),
    #[error("base metric {0} is missing")]
    Missing(&'static str),
}

/// Base metrics: name, then each value with its weight. PR's weights
/// depend on the scope and are chosen in [`base_score`].
const BASE: [(&str, &[(&str, f64)]); 8] = [
    ("AV", &[("N", 0.85), ("A", 0.62), ("L", 0.55), ("P", 0.2)]),
    ("AC", &[("L", 0.77), ("H", 0.44)]),
    ("PR", &[("N", 0.85), ("L", 0.62), ("H", 0.27)]),
    ("UI", &[("N", 0.85), ("R", 0.62)]),
    ("S", &[("U", 0.0), ("C", 0.0)]),
    ("C", &[("H", 0.56), ("L", 0.22), ("N", 0.0)]),
    ("I", &[("H", 0.56), ("L", 0.22), ("N", 0.0)]),
    ("A", &[("H", 0.56), ("L", 0.22), ("N", 0.0)]),
];

/// Temporal and environmental metric names (values are checked loosely:
/// one letter; they do not change the base score).
const OTHER: [&str; 14] = [
    "E", "RL", "RC", "CR", "IR", "AR", "MAV", "MAC", "MPR", "MUI", "MS", "MC", "MI", "MA",
];

/// The base score of a CVSS v3.0 or v3.1 vector, and its rating.
pub fn base_score(vector: &str) -> Result<(f64, Rating), CvssError> {
    let (v31, metrics) = if let Some(rest) = vector.strip_prefix("CVSS:3.1/") {
        (true, rest)
    } else if let Some(rest) = vector.strip_prefix("CVSS:3.0/") {
        (false, rest)
    } else {
        return Err(CvssError::NotV3);
    };
    let mut values: [Option<&str>; 8] = [None; 8];
    let mut others: Vec<&str> = Vec::new();
    for part in metrics.split('/') {
        let (name, value) = part
            .split_once(':')
            .ok_or_else(|| CvssError::BadMetric(part.chars().take(16).collect()))?;
        if let Some(i) = BASE.iter().position(|(n, _)| *n == name) {
            if !BASE[i].1.iter().any(|(v, _)| *v == value) {
                return Err(CvssError::BadMetric(name.to_owned()));
            }
            if values[i].replace(value).is_some() {
                return Err(CvssError::Duplicate(name.to_owned()));
            }
        } else if let Some(other) = OTHER.iter().find(|n| **n == name) {
            if value.len() != 1 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(CvssError::BadMetric(name.to_owned()));
            }
            if others.contains(other) {
                return Err(CvssError::Duplicate(name.to_owned()));
            }
            others.push(other);
        } else {
            return Err(CvssError::BadMetric(name.chars().take(16).collect()));
        }
    }
    let mut weights = [0.0; 8];
    let mut letters = [""; 8];
    for (i, (name, table)) in BASE.iter().enumerate() {
        let value = values[i].ok_or(CvssError::Missing(name))?;
        letters[i] = value;
        // The value was checked against this table above.
        weights[i] = table
            .iter()
            .find(|(v, _)| *v == value)
            .map_or(0.0, |(_, w)| *w);
    }
    let changed = letters[4] == "C";
    let [av, ac, mut pr, ui, _, c, i, a] = weights;
    // §7.1: Privileges Required weighs more when the scope changes.
    if changed {
        pr = match letters[2] {
            "L" => 0.68,
            "H" => 0.5,
            _ => pr,
        };
    }
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    let score = if impact <= 0.0 {
        0.0
    } else if changed {
        roundup(v31, (1.08 * (impact + exploitability)).min(10.0))
    } else {
        roundup(v31, (impact + exploitability).min(10.0))
    };
    Ok((score, Rating::of(score)))
}

/// v3.1 Appendix A: round up to one decimal without floating-point
/// surprises (4.000000000000001 is 4.0); v3.0 rounds up plainly.
fn roundup(v31: bool, value: f64) -> f64 {
    if !v31 {
        return (value * 10.0).ceil() / 10.0;
    }
    let int_input = (value * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vector: &str, score: f64, rating: Rating) {
        assert_eq!(base_score(vector), Ok((score, rating)), "{vector}");
    }

    #[test]
    fn specification_examples() {
        // The v3.1 specification's worked examples (§8 of the examples
        // document) and well-known CVEs.
        check(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
            6.1,
            Rating::Medium,
        ); // CVE-2013-1937
        check(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N",
            7.5,
            Rating::High,
        ); // CVE-2014-0160
        check(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            Rating::Critical,
        );
        check(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
            10.0,
            Rating::Critical,
        );
        check(
            "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
            5.5,
            Rating::Medium,
        );
        check(
            "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N",
            6.4,
            Rating::Medium,
        ); // CVE-2013-0375
        check(
            "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            7.8,
            Rating::High,
        );
        check(
            "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
            5.9,
            Rating::Medium,
        );
        check(
            "CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            6.8,
            Rating::Medium,
        );
        check(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N",
            0.0,
            Rating::None,
        );
        check(
            "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            9.8,
            Rating::Critical,
        );
        // Temporal metrics do not change the base score.
        check(
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C",
            9.8,
            Rating::Critical,
        );
    }

    #[test]
    fn roundup_is_the_appendix() {
        assert_eq!(roundup(true, 4.000_000_000_000_001), 4.0);
        assert_eq!(roundup(true, 4.02), 4.1);
        assert_eq!(roundup(false, 4.02), 4.1);
    }

    #[test]
    fn malformed_vectors_are_refused() {
        for vector in [
            "",
            "CVSS:2.0/AV:N",
            "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:X",
            "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        ] {
            assert!(base_score(vector).is_err(), "{vector}");
        }
    }

    #[test]
    fn ratings() {
        assert_eq!(Rating::of(0.1), Rating::Low);
        assert_eq!(Rating::of(3.9), Rating::Low);
        assert_eq!(Rating::of(4.0), Rating::Medium);
        assert_eq!(Rating::of(8.9), Rating::High);
        assert_eq!(Rating::of(9.0), Rating::Critical);
        assert_eq!(Rating::parse("HIGH"), Some(Rating::High));
    }
}
