//! Whole numbers in request bodies: JSON has one number type, so `1.0` is
//! the same number as `1` and must be taken as one, while `1.5`, `-1` or
//! `1e300` are refused with a message naming the value.

use serde::Deserialize as _;
use serde::de::Error as _;

/// An integer field of a JSON body: `1800` or `1800.0`, one number in
/// JSON (RFC 8259) and an `integer` to the document's JSON Schema, so both
/// are read; a fraction, a negative number or one out of `T`'s range is
/// refused (400) like any body that is not the schema.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    /// Past 2^53 a float no longer spells one integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=EXACT).contains(f))
                // In range and whole: the conversion is exact.
                .map(|f| f as u64)
        })
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range")))
}

/// [`whole_number`] for an optional field (`null` or absent: `None`).
pub fn optional_whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    #[derive(serde::Deserialize)]
    struct Whole<T: TryFrom<u64>>(#[serde(deserialize_with = "whole_number")] T);
    Ok(Option::<Whole<T>>::deserialize(deserializer)?.map(|Whole(n)| n))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(default, deserialize_with = "super::optional_whole_number")]
        n: Option<u32>,
    }

    fn n(json: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<Body>(json)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_in_any_spelling_and_nothing_else() {
        assert_eq!(n(r#"{"n": 1800}"#), Ok(Some(1800)));
        assert_eq!(n(r#"{"n": 1800.0}"#), Ok(Some(1800)));
        assert_eq!(n(r#"{"n": null}"#), Ok(None));
        assert_eq!(n("{}"), Ok(None));
        for bad in ["1.5", "-1", "1e300", "4294967296", "\"7\""] {
            assert!(n(&format!(r#"{{"n": {bad}}}"#)).is_err(), "{bad} taken");
        }
    }
}
