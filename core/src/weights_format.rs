//! The weight file: a small binary format that can be read in place, even from flash.
//!
//! All fields are little-endian and 4 bytes wide, so that in a file that starts at a
//! 4-byte aligned address the parameters are an aligned `[f32]`, read with no copy.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic, `MGPTWGT\0` |
//! | 8 | 4 | format version, [`VERSION`] |
//! | 12 | 4 | length of the whole file in bytes |
//! | 16 | 24 | dims: vocab, embd, heads, layers, block, mlp (`u32` each) |
//! | 40 | 4 · (vocab − 1) | the characters, as Unicode scalar values in ascending order (BOS is implied) |
//! | … | 4 · params | the parameters in [`Layout`](crate::Layout) order, `f32` |
//! | length − 4 | 4 | CRC-32 (ISO-HDLC, the one of zlib and PNG) of every byte before it |
//!
//! [`WeightFile::parse`] checks all of it and never panics, whatever the bytes: each
//! problem is its own [`Error`]. Bytes after the stated length are ignored, so a file
//! can sit at the start of a larger flash region.

use crate::config::{Config, Dims};
use crate::error::Error;
use crate::float::finite_bits;
use crate::params::Weights;
use crate::tokenizer::Vocab;

/// The first eight bytes of every weight file.
pub const MAGIC: [u8; 8] = *b"MGPTWGT\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
const HEADER: usize = 40;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Bytes of the weight file of a model of these dimensions.
pub const fn encoded_len(dims: &Dims) -> usize {
    HEADER + 4 * (dims.vocab - 1) + 4 * dims.num_params() + 4
}

/// The same, computed without overflow for untrusted dimensions.
fn checked_len(d: &Dims) -> Option<usize> {
    let (e, m) = (d.embd as u64, d.mlp as u64);
    let layer = (4 * e)
        .checked_mul(e)?
        .checked_add((2 * e).checked_mul(m)?)?;
    let params = (2 * d.vocab as u64 + d.block as u64)
        .checked_mul(e)?
        .checked_add((d.layers as u64).checked_mul(layer)?)?;
    let len = params
        .checked_add(d.vocab as u64)?
        .checked_mul(4)?
        .checked_add(HEADER as u64)?;
    usize::try_from(len).ok()
}

/// The CRC-32 of parameters as the weight file stores them (little-endian `f32`), to
/// tell whether two trainings, on a host and on a chip, ended with the same bits.
pub fn params_crc(params: &[f32]) -> u32 {
    let mut digest = CRC.digest();
    for p in params {
        digest.update(&p.to_le_bytes());
    }
    digest.finalize()
}

/// Writes the weight file of `weights` and `vocab` into `out`; returns its length.
pub fn write<C: Config>(
    out: &mut [u8],
    vocab: &Vocab,
    weights: &Weights<'_, C, f32>,
) -> Result<usize, Error> {
    let d = weights.dims();
    if vocab.len() != d.vocab {
        return Err(Error::Usage("the vocabulary does not match the weights"));
    }
    let len = encoded_len(&d);
    let found = out.len();
    let out = out
        .get_mut(..len)
        .ok_or(Error::BufferTooSmall { needed: len, found })?;
    let words = [
        VERSION as usize,
        len,
        d.vocab,
        d.embd,
        d.heads,
        d.layers,
        d.block,
        d.mlp,
    ];
    let words = words.into_iter().map(|w| w as u32);
    let chars = vocab.chars().iter().map(|&c| c as u32);
    let params = weights.as_slice().iter().map(|p| p.to_bits());
    out[..8].copy_from_slice(&MAGIC);
    for (slot, word) in out[8..len - 4]
        .chunks_exact_mut(4)
        .zip(words.chain(chars).chain(params))
    {
        slot.copy_from_slice(&word.to_le_bytes());
    }
    let crc = CRC.checksum(&out[..len - 4]);
    out[len - 4..].copy_from_slice(&crc.to_le_bytes());
    Ok(len)
}

/// A checked weight file, borrowing its bytes.
#[derive(Clone, Debug)]
pub struct WeightFile<'a> {
    dims: Dims,
    vocab: Vocab,
    params: &'a [u8],
}

fn word(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(w)
}

impl<'a> WeightFile<'a> {
    /// Checks a weight file: magic, version, length, checksum, shape and vocabulary.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER + 4 {
            return Err(Error::Truncated {
                needed: HEADER + 4,
                found: bytes.len(),
            });
        }
        if bytes[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = word(bytes, 8);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let len = word(bytes, 12) as usize;
        if len < HEADER + 4 || !len.is_multiple_of(4) {
            return Err(Error::Corrupt("the stated file length is impossible"));
        }
        let bytes = bytes.get(..len).ok_or(Error::Truncated {
            needed: len,
            found: bytes.len(),
        })?;
        let (stored, computed) = (word(bytes, len - 4), CRC.checksum(&bytes[..len - 4]));
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        let field = |i: usize| word(bytes, 16 + 4 * i) as usize;
        let dims = Dims {
            vocab: field(0),
            embd: field(1),
            heads: field(2),
            layers: field(3),
            block: field(4),
            mlp: field(5),
        };
        if !dims.is_valid() {
            return Err(Error::Corrupt("the model dimensions are invalid"));
        }
        if checked_len(&dims) != Some(len) {
            return Err(Error::Corrupt(
                "the file length does not match the model dimensions",
            ));
        }
        // The vocabulary (1 KB) is filled in place, not built and moved: on a chip each
        // copy is stack.
        let params = &bytes[HEADER + 4 * (dims.vocab - 1)..len - 4];
        let mut file = WeightFile {
            dims,
            vocab: Vocab::new(),
            params,
        };
        let mut prev = None;
        for at in (HEADER..HEADER + 4 * (dims.vocab - 1)).step_by(4) {
            let c = char::from_u32(word(bytes, at))
                .ok_or(Error::Corrupt("a vocabulary entry is not a character"))?;
            if prev.is_some_and(|p| p >= c) {
                return Err(Error::Corrupt("the vocabulary is not sorted and distinct"));
            }
            file.vocab.insert(c)?;
            prev = Some(c);
        }
        let bad = params
            .chunks_exact(4)
            .position(|b| !finite_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        if let Some(index) = bad {
            return Err(Error::NonFiniteWeight { index });
        }
        Ok(file)
    }

    /// Bytes of the file, as its header states: any bytes after them are not its.
    pub fn byte_len(&self) -> usize {
        encoded_len(&self.dims)
    }

    /// The model's dimensions, with the vocabulary in use.
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    fn check<C: Config>(&self) -> Result<(), Error> {
        if self.dims.with_vocab(C::DIMS.vocab) != C::DIMS || self.dims.vocab > C::DIMS.vocab {
            return Err(Error::ConfigMismatch {
                expected: C::DIMS,
                found: self.dims,
            });
        }
        Ok(())
    }

    /// The parameters as weights of `C`, read in place with no copy.
    ///
    /// The file must start at a 4-byte aligned address ([`Error::Misaligned`]
    /// otherwise), and the target must be little-endian.
    pub fn weights<C: Config>(&self) -> Result<Weights<'a, C, f32>, Error> {
        self.check::<C>()?;
        if cfg!(target_endian = "big") {
            return Err(Error::Usage(
                "in-place weights need a little-endian target; use copy_params",
            ));
        }
        let params: &'a [f32] =
            bytemuck::try_cast_slice(self.params).map_err(|_| Error::Misaligned)?;
        Weights::new(params, self.dims.vocab)
    }

    /// Copies the parameters of `C` into `out`, from any alignment and on any target.
    pub fn copy_params<C: Config>(&self, out: &mut [f32]) -> Result<(), Error> {
        self.check::<C>()?;
        let n = self.params.len() / 4;
        if out.len() != n {
            return Err(Error::ParamCount {
                expected: n,
                found: out.len(),
            });
        }
        for (p, b) in out.iter_mut().zip(self.params.chunks_exact(4)) {
            *p = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }
}
