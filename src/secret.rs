//! How a secret (an API key, an upstream token) is shown where it must be told apart from others: the
//! admin API, the console, logs. Never enough of it to use.

/// The first and last four characters around an ellipsis (`abcd…wxyz`); only the ellipsis for
/// anything shorter than 12 characters (sso tokens and generated keys are far longer).
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_four_and_four_of_a_long_secret_and_nothing_of_a_short_one() {
        assert_eq!(mask("tok-alpha-0001"), "tok-…0001");
        assert_eq!(mask("sk-0123456789abcdef"), "sk-0…cdef");
        assert_eq!(mask("test-key-1"), "…");
        assert_eq!(mask("elevenchars"), "…");
        assert_eq!(mask("twelve-chars"), "twel…hars");
        // Characters, not bytes: a non-ASCII secret is cut between characters.
        assert_eq!(mask("ééééxxxxéééé"), "éééé…éééé");
        assert_eq!(mask(""), "…");
    }
}
