//! Reading a list of names the way microgpt.py does, with clear errors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use microgpt_core::{Config, Error, PyRandom, Vocab, presets};

/// Names from a text file, one per line, and their vocabulary.
pub struct Dataset {
    /// Where they came from, for messages.
    pub path: PathBuf,
    /// The names, in file order.
    pub docs: Vec<String>,
    /// Their sorted characters plus BOS.
    pub vocab: Vocab,
}

/// Python's `str.strip()`: Unicode whitespace plus the four ASCII separators that
/// Python also counts as space.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

impl Dataset {
    /// Reads `path` like microgpt.py: `[l.strip() for l in open(path) if l.strip()]`.
    /// Python's text mode ends lines at `\n`, `\r` and `\r\n`.
    pub fn load(path: &Path) -> Result<Dataset> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the dataset {}", path.display()))?;
        Self::parse(path, bytes)
    }

    /// [`Dataset::load`] of a file's bytes; `path` names it in messages. Any bytes give
    /// a dataset or an error, never a panic (`tests/fuzz` checks it).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Dataset> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            anyhow::anyhow!(
                "{} is not UTF-8 text (invalid byte at offset {at}, line {line}); save it as UTF-8",
                path.display()
            )
        })?;
        let docs: Vec<String> = text
            .split(['\n', '\r'])
            .map(|l| l.trim_matches(is_py_space))
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if docs.is_empty() {
            bail!(
                "{} has no names: give a text file with one name per line",
                path.display()
            );
        }
        let vocab = Vocab::from_chars(docs.iter().flat_map(|d| d.chars())).map_err(|e| match e {
            Error::TooManyChars { capacity, .. } => {
                anyhow::anyhow!("{} has more than {capacity} distinct characters; a vocabulary holds at most {capacity}", path.display())
            }
            other => other.into(),
        })?;
        Ok(Dataset {
            path: path.to_owned(),
            docs,
            vocab,
        })
    }

    /// Checks that the vocabulary fits the model `C`, with a message that says what to do.
    pub fn check_fits<C: Config>(&self) -> Result<()> {
        let capacity = C::DIMS.vocab - 1;
        let n = self.vocab.chars().len();
        if n > capacity {
            bail!(
                "{} has {n} distinct characters, but the {} model holds at most {capacity}",
                self.path.display(),
                C::NAME
            );
        }
        Ok(())
    }

    /// The longest name in characters, and how many are longer than `limit`.
    pub fn too_long(&self, limit: usize) -> (usize, &str) {
        let long = self
            .docs
            .iter()
            .filter(|d| d.chars().count() > limit)
            .count();
        let longest = self
            .docs
            .iter()
            .max_by_key(|d| d.chars().count())
            .map_or("", String::as_str);
        (long, longest)
    }

    /// Warns on stderr about names that do not fit the context of `C` and are cut, as
    /// microgpt cuts them, and names a shipped preset whose context holds them.
    pub fn warn_truncation<C: Config>(&self) {
        let limit = C::DIMS.block - 1;
        let (long, longest) = self.too_long(limit);
        if long > 0 {
            let need = longest.chars().count() + 1;
            let hint = presets()
                .find(|s| s.dims.block >= need)
                .map_or_else(String::new, |s| {
                    format!(
                        "; --config {} (or --block {}) holds them",
                        s.preset, s.dims.block
                    )
                });
            eprintln!(
                "warning: {long} names in {} are longer than {limit} characters and are cut to the context of {} positions, \
                 as microgpt does (the longest, {longest:?}, has {}){hint}",
                self.path.display(),
                C::DIMS.block,
                longest.chars().count()
            );
        }
    }
}

/// Shuffles the names with Python's `random.shuffle` under `seed` and holds out the last
/// 1000 (or 10% when there are fewer than 10,000) for validation.
///
/// The shuffle is microgpt.py's, so with the same seed the training names come in
/// microgpt's order. Returns the generator, for the initial weights to follow.
pub fn split(docs: &[String], seed: i64) -> (Vec<String>, Vec<String>, PyRandom) {
    let mut rng = PyRandom::new(seed);
    let mut docs = docs.to_vec();
    rng.shuffle(&mut docs);
    let val = (docs.len() / 10).min(1000);
    let train = docs.len() - val;
    let val_docs = docs.split_off(train);
    (docs, val_docs, rng)
}
