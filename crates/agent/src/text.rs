//! Text the agent sends is cut to the protocol's limits without splitting a
//! character (`bulwark_protocol::Limits::max_text` and friends).

/// Cuts `s` to at most `max` bytes without splitting a char.
pub(crate) fn clip(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn clipped(text: &str, max: usize) -> String {
    let mut s = text.to_owned();
    clip(&mut s, max);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_splits_a_char() {
        assert_eq!(clipped("héllo", 2), "h");
        assert_eq!(clipped("héllo", 3), "hé");
        assert_eq!(clipped("abc", 10), "abc");
        assert_eq!(clipped("abc", 0), "");
        let mut s = "aé".repeat(10); // 30 bytes, 'é' at odd offsets
        clip(&mut s, 2);
        assert_eq!(s, "a");
    }
}
