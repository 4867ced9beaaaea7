//! Box ids: 12 random Base62 characters, as BoxLite's.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const ID_LENGTH: usize = 12;

pub fn new_box_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LENGTH).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

pub fn is_box_id(text: &str) -> bool {
    text.len() == ID_LENGTH && text.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twelve_base62_characters_and_distinct() {
        let first = new_box_id();
        assert!(is_box_id(&first), "{first}");
        assert_ne!(first, new_box_id());
        assert!(!is_box_id("short"));
    }
}
