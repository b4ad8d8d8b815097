//! Characters to token ids and back, as microgpt does it.
//!
//! The vocabulary is the sorted set of the dataset's characters, and then BOS, whose id
//! is the number of characters. For names that is `a`..`z` as 0..25 and BOS as 26. A
//! [`Vocab`] holds at most [`MAX_CHARS`] characters in a fixed array (about 1 KB);
//! whether they fit a given model is checked by [`Vocab::check_fits`].

use crate::config::Config;
use crate::error::Error;

/// The most characters a vocabulary holds, so that every token id (BOS included) fits
/// in a `u8`.
pub const MAX_CHARS: usize = 255;
/// The most tokens a vocabulary holds: [`MAX_CHARS`] plus BOS.
pub const MAX_TOKENS: usize = MAX_CHARS + 1;

/// A character vocabulary plus BOS, with a fixed capacity and no heap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vocab {
    /// Sorted, distinct.
    chars: heapless::Vec<char, MAX_CHARS>,
}

impl Vocab {
    /// An empty vocabulary: BOS only.
    pub const fn new() -> Self {
        Vocab {
            chars: heapless::Vec::new(),
        }
    }

    /// The vocabulary of a text: its distinct characters, sorted.
    ///
    /// Fails with [`Error::TooManyChars`] past [`MAX_CHARS`] distinct characters.
    pub fn from_chars(chars: impl IntoIterator<Item = char>) -> Result<Self, Error> {
        let mut vocab = Vocab::new();
        for c in chars {
            vocab.insert(c)?;
        }
        Ok(vocab)
    }

    /// Adds a character, keeping the set sorted; a character already present is a no-op.
    pub fn insert(&mut self, c: char) -> Result<(), Error> {
        if let Err(at) = self.chars.binary_search(&c) {
            let full = Error::TooManyChars {
                found: MAX_CHARS + 1,
                capacity: MAX_CHARS,
            };
            self.chars.insert(at, c).map_err(|_| full)?;
        }
        Ok(())
    }

    /// Number of tokens: the characters plus BOS.
    pub fn len(&self) -> usize {
        self.chars.len() + 1
    }

    /// Whether the vocabulary has no characters (only BOS).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters in token order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of BOS, which both starts and ends every name.
    pub fn bos(&self) -> usize {
        self.chars.len()
    }

    /// The token id of a character.
    pub fn encode(&self, c: char) -> Result<usize, Error> {
        self.chars
            .binary_search(&c)
            .map_err(|_| Error::UnknownChar(c))
    }

    /// The character of a token id; `None` for BOS and for ids outside the vocabulary.
    pub fn decode(&self, token: usize) -> Option<char> {
        self.chars.get(token).copied()
    }

    /// Checks that this vocabulary fits the model `C`, and that it has a character.
    pub fn check_fits<C: Config>(&self) -> Result<(), Error> {
        let capacity = C::DIMS.vocab - 1;
        if self.chars.len() > capacity {
            return Err(Error::TooManyChars {
                found: self.chars.len(),
                capacity,
            });
        }
        if self.is_empty() {
            return Err(Error::Usage("the vocabulary has no characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Micro;

    #[test]
    fn sorted_distinct_with_bos_last() {
        let v = Vocab::from_chars("emma olivia ava".chars().filter(|c| *c != ' ')).unwrap();
        assert_eq!(v.chars(), &['a', 'e', 'i', 'l', 'm', 'o', 'v']);
        assert_eq!(v.len(), 8);
        assert_eq!(v.bos(), 7);
        assert_eq!(v.encode('m'), Ok(4));
        assert_eq!(v.decode(4), Some('m'));
        assert_eq!(v.decode(v.bos()), None);
        assert_eq!(v.encode('z'), Err(Error::UnknownChar('z')));
    }

    #[test]
    fn capacity_errors() {
        let too_many = Vocab::from_chars((0..300u32).filter_map(|i| char::from_u32(0x100 + i)));
        assert!(matches!(
            too_many,
            Err(Error::TooManyChars {
                capacity: MAX_CHARS,
                ..
            })
        ));

        let wide = Vocab::from_chars('a'..='z').unwrap();
        assert_eq!(wide.check_fits::<Micro>(), Ok(()));
        let wider = Vocab::from_chars(('a'..='z').chain(['A'])).unwrap();
        assert_eq!(
            wider.check_fits::<Micro>(),
            Err(Error::TooManyChars {
                found: 27,
                capacity: 26
            })
        );
    }
}
