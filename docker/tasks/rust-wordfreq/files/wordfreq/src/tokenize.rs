//! Splitting text into words: a word is a maximal run of ASCII letters, compared lowercased.

pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphabetic()))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
}
