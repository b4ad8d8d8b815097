//! A batch of names as rows of (input token, target token, position).
//!
//! Names are encoded as microgpt does: `[BOS] + chars + [BOS]`, cut to the context, and
//! each position becomes one row that predicts the next token. The rows of all names
//! sit back to back, so the matrix kernels run over every row of the batch at once and
//! no position is padding. A row's position tells where its name starts: the row
//! `r` at position `p` attends to rows `r - p ..= r`.

use bytemuck::Zeroable;

use crate::config::Config;
use crate::error::Error;
use crate::tokenizer::Vocab;

/// One predicted position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Zeroable)]
#[repr(C)]
pub struct Row {
    /// The token seen at this position.
    pub token: u8,
    /// The token to predict.
    pub target: u8,
    /// The position in its name, from 0 (the leading BOS).
    pub pos: u8,
}

/// Up to `C::BATCH` names, encoded, with no heap.
pub struct Batch<C: Config> {
    rows: C::Rows<Row>,
    len: usize,
    names: usize,
}

// SAFETY: a `Buffer` is `Zeroable`, and 0 is a valid count.
unsafe impl<C: Config> Zeroable for Batch<C> {}

impl<C: Config> Default for Batch<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Config> Batch<C> {
    /// An empty batch.
    pub fn new() -> Self {
        Zeroable::zeroed()
    }

    /// Removes every name.
    pub fn clear(&mut self) {
        self.len = 0;
        self.names = 0;
    }

    /// The rows that `name` takes in a batch: one for each of its characters and one
    /// for the BOS that starts it, at most `block` (the characters past the context are
    /// dropped).
    pub fn rows_of(name: &str) -> usize {
        C::DIMS.block.min(name.chars().count() + 1)
    }

    /// Appends a name and returns its number of rows ([`Batch::rows_of`]).
    ///
    /// Characters past the context are dropped, as in microgpt; compare the result with
    /// the name's length to warn about it. A character outside `vocab` is an error and
    /// leaves the batch as it was.
    pub fn push(&mut self, vocab: &Vocab, name: &str) -> Result<usize, Error> {
        if self.names == C::BATCH {
            return Err(Error::BatchFull { max: C::BATCH });
        }
        vocab.check_fits::<C>()?;
        let bos = vocab.bos() as u8;
        let n = Self::rows_of(name);
        // One pass that encodes and writes. An unknown character stops it with the
        // batch's length unchanged, so the rows written are past the end, unused.
        let mut chars = name.chars();
        let mut token = bos;
        for (pos, row) in self.rows.as_mut()[self.len..self.len + n]
            .iter_mut()
            .enumerate()
        {
            let target = match chars.next() {
                Some(c) => vocab.encode(c)? as u8,
                None => bos,
            };
            *row = Row {
                token,
                target,
                pos: pos as u8,
            };
            token = target;
        }
        // The characters past the context are dropped, but they too must be known.
        for c in chars {
            vocab.encode(c)?;
        }
        self.len += n;
        self.names += 1;
        Ok(n)
    }

    /// The rows of every name, back to back.
    pub fn rows(&self) -> &[Row] {
        &self.rows.as_ref()[..self.len]
    }

    /// Number of names.
    pub fn names(&self) -> usize {
        self.names
    }

    /// Whether the batch has no names.
    pub fn is_empty(&self) -> bool {
        self.names == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Micro;

    #[test]
    fn encodes_like_microgpt() {
        let vocab = Vocab::from_chars('a'..='z').unwrap();
        let mut b = Batch::<Micro>::new();
        assert_eq!(b.push(&vocab, "ab"), Ok(3));
        let rows: [(u8, u8, u8); 3] = [(26, 0, 0), (0, 1, 1), (1, 26, 2)];
        let got: heapless::Vec<(u8, u8, u8), 3> = b
            .rows()
            .iter()
            .map(|r| (r.token, r.target, r.pos))
            .collect();
        assert_eq!(&got[..], &rows[..]);

        // 20 letters: cut to 16 rows, the last one predicting the 16th letter.
        assert_eq!(b.push(&vocab, "abcdefghijklmnopqrst"), Ok(16));
        let last = b.rows()[b.rows().len() - 1];
        assert_eq!((last.token, last.target, last.pos), (14, 15, 15));
        assert_eq!(b.push(&vocab, ""), Ok(1));
        assert_eq!(b.names(), 3);

        let before: heapless::Vec<Row, 20> = b.rows().iter().copied().collect();
        assert_eq!(b.push(&vocab, "aB"), Err(Error::UnknownChar('B')));
        // An unknown character past the context is an error too.
        let long = "abcdefghijklmnopqrsT";
        assert_eq!(b.push(&vocab, long), Err(Error::UnknownChar('T')));
        assert_eq!((b.names(), b.rows()), (3, &before[..]));
        b.clear();
        for _ in 0..Micro::BATCH {
            b.push(&vocab, "a").unwrap();
        }
        assert_eq!(
            b.push(&vocab, "a"),
            Err(Error::BatchFull { max: Micro::BATCH })
        );
    }
}
