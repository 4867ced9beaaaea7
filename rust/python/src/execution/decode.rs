//! Incremental UTF-8 decoding at the Python edge (invariant 1): a character split across
//! chunks survives, and only truly invalid bytes become U+FFFD.

/// Incremental UTF-8 decoding (invariant 1).
#[derive(Default)]
pub(super) struct Utf8Decoder {
    /// The start of a character whose end has not come yet.
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub(super) fn decode(&mut self, bytes: &[u8], last: bool) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        Some(length) => {
                            text.push('\u{FFFD}');
                            rest = &after[length..];
                        }
                        None if last => {
                            text.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_chunks_survives() {
        let mut decoder = Utf8Decoder::default();
        let e_acute = "é".as_bytes();
        assert_eq!(decoder.decode(b"hel", false), "hel");
        assert_eq!(decoder.decode(&[b'l', b'o', e_acute[0]], false), "lo");
        assert_eq!(decoder.decode(&e_acute[1..], false), "é");
        assert_eq!(decoder.decode(b"", true), "");
    }

    #[test]
    fn only_truly_invalid_bytes_become_replacement_characters() {
        let mut decoder = Utf8Decoder::default();
        assert_eq!(decoder.decode(b"a\xff\x00b", false), "a\u{FFFD}\u{0}b");
        // A character cut short by the end of the stream is invalid too.
        assert_eq!(decoder.decode(&"€".as_bytes()[..2], false), "");
        assert_eq!(decoder.decode(b"", true), "\u{FFFD}");
    }
}
