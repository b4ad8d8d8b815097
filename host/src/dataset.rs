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

    /// The names that [`split`] holds out under `seed`, for scoring; an error when the
    /// list is too short to hold out any (fewer than 10 names).
    pub fn held_out(&self, seed: i64) -> Result<Vec<String>> {
        let val = split(&self.docs, seed).1;
        if val.is_empty() {
            bail!(
                "{} has {}, too few to hold any out: validation takes 10% of the names, so it needs at least 10",
                self.path.display(),
                count_names(self.docs.len())
            );
        }
        Ok(val)
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
            let (are, them) = if long == 1 {
                ("is", "it")
            } else {
                ("are", "them")
            };
            let names = count_names(long);
            let hint = presets()
                .find(|s| s.dims.block >= need)
                .map_or_else(String::new, |s| {
                    format!(
                        "; --config {} (or --block {}) holds {them}",
                        s.preset, s.dims.block
                    )
                });
            eprintln!(
                "warning: {names} in {} {are} longer than {limit} characters and {are} cut to the context of {} positions, \
                 as microgpt does (the longest, {longest:?}, has {}){hint}",
                self.path.display(),
                C::DIMS.block,
                longest.chars().count()
            );
        }
    }
}

/// `n` names in words: "1 name", "2 names".
pub fn count_names(n: usize) -> String {
    if n == 1 {
        "1 name".to_string()
    } else {
        format!("{n} names")
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

/// Which training name each slot of a run takes: slot `i` is step `i / batch`'s name
/// `i % batch`. The split's order cycles, as in microgpt; with `reshuffle`, every pass
/// after the first takes its own shuffle of it, so that no two passes repeat the same
/// batches. Both depend only on the slot, so a resumed run takes the same names.
pub struct Order {
    n: usize,
    seed: i64,
    reshuffle: bool,
    /// The pass whose shuffle `perm` holds.
    pass: usize,
    perm: Vec<usize>,
}

impl Order {
    /// The order of `n` training names for a run with `seed`.
    pub fn new(n: usize, seed: i64, reshuffle: bool) -> Self {
        Order {
            n,
            seed,
            reshuffle,
            pass: 0,
            perm: (0..n).collect(),
        }
    }

    /// The training name of slot `i`.
    pub fn name(&mut self, i: usize) -> usize {
        let (pass, at) = (i / self.n, i % self.n);
        if !self.reshuffle {
            return at;
        }
        if pass != self.pass {
            // Pass 0 keeps the split's order; pass p draws from a generator of its own,
            // keyed by the run's seed and p.
            self.perm = (0..self.n).collect();
            if pass > 0 {
                let (s, p) = (self.seed.unsigned_abs(), pass as u64);
                let key = [s as u32, (s >> 32) as u32, p as u32, (p >> 32) as u32];
                PyRandom::from_key(&key).shuffle(&mut self.perm);
            }
            self.pass = pass;
        }
        self.perm[at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes(order: &mut Order, n: usize, count: usize) -> Vec<Vec<usize>> {
        (0..count)
            .map(|p| (0..n).map(|i| order.name(p * n + i)).collect())
            .collect()
    }

    #[test]
    fn counts_read_as_words() {
        let words: Vec<String> = [0, 1, 2, 1000].map(count_names).into();
        assert_eq!(words, ["0 names", "1 name", "2 names", "1000 names"]);
    }

    #[test]
    fn without_reshuffle_the_names_cycle() {
        let mut order = Order::new(5, 42, false);
        let got: Vec<usize> = (0..12).map(|i| order.name(i)).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]);
    }

    #[test]
    fn every_pass_is_its_own_shuffle_and_depends_only_on_the_slot() {
        let n = 50;
        let all = passes(&mut Order::new(n, 42, true), n, 4);
        assert_eq!(
            all[0],
            (0..n).collect::<Vec<_>>(),
            "pass 0 is the split's order"
        );
        for (p, pass) in all.iter().enumerate() {
            let mut sorted = pass.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..n).collect::<Vec<_>>(),
                "pass {p} is a permutation"
            );
        }
        assert!(all[1] != all[0] && all[2] != all[1] && all[3] != all[2]);
        // A run resumed in the middle of pass 2 takes the same names.
        let mut resumed = Order::new(n, 42, true);
        let later: Vec<usize> = (2 * n + 7..4 * n).map(|i| resumed.name(i)).collect();
        assert_eq!(later, [&all[2][7..], &all[3][..]].concat());
        // Another seed, other shuffles.
        assert_ne!(passes(&mut Order::new(n, 7, true), n, 2)[1], all[1]);
    }
}
