//! The weight file: a small binary format that can be read in place, even from flash.
//!
//! All fields are little-endian and 4 bytes wide, so that in a file that starts at a
//! 4-byte aligned address the parameters are an aligned `[f32]`, read with no copy.
//! The parameters come in one of two [`Encoding`]s, told apart by the magic:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic: `MGPTWGT\0` for `f32` ([`MAGIC`]), `MGPTWI8\0` for int8 ([`MAGIC_INT8`]) |
//! | 8 | 4 | format version, [`VERSION`] |
//! | 12 | 4 | length of the whole file in bytes |
//! | 16 | 24 | dims: vocab, embd, heads, layers, block, mlp (`u32` each) |
//! | 40 | 4 · (vocab − 1) | the characters, as Unicode scalar values in ascending order (BOS is implied) |
//! | … | 4 · params | `f32`: the parameters in [`Layout`] order |
//! | … | 4 · rows + params, then zeros to a multiple of 4 | int8: one `f32` scale per matrix row ([`Layout::rows`]), then the parameters as `i8` in [`Layout`] order ([`crate::int8`]) |
//! | length − 4 | 4 | CRC-32 (ISO-HDLC, the one of zlib and PNG) of every byte before it |
//!
//! [`WeightFile::parse`] checks all of it and never panics, whatever the bytes: each
//! problem is its own [`Error`]. Bytes after the stated length are ignored, so a file
//! can sit at the start of a larger flash region.

use crate::config::{Config, Dims};
use crate::error::Error;
use crate::float::finite_bits;
use crate::int8::{Int8Weights, dequantize_row, quantize_row};
use crate::params::{Layout, Weights};
use crate::tokenizer::Vocab;

/// The first eight bytes of a weight file of `f32` parameters.
pub const MAGIC: [u8; 8] = *b"MGPTWGT\0";
/// The first eight bytes of a weight file of int8 parameters.
pub const MAGIC_INT8: [u8; 8] = *b"MGPTWI8\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
const HEADER: usize = 40;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// How a weight file stores the parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Encoding {
    /// Four bytes each, as trained.
    F32,
    /// One byte each, with a scale per matrix row ([`crate::int8`]).
    Int8,
}

impl Encoding {
    /// The magic that starts a file of this encoding.
    pub const fn magic(self) -> [u8; 8] {
        match self {
            Encoding::F32 => MAGIC,
            Encoding::Int8 => MAGIC_INT8,
        }
    }
}

/// Bytes of the weight file of a model of these dimensions.
pub const fn encoded_len(dims: &Dims, encoding: Encoding) -> usize {
    let body = match encoding {
        Encoding::F32 => 4 * dims.num_params(),
        Encoding::Int8 => 4 * Layout::new(*dims).rows() + dims.num_params().next_multiple_of(4),
    };
    HEADER + 4 * (dims.vocab - 1) + body + 4
}

/// The same, computed without overflow for untrusted dimensions.
fn checked_len(d: &Dims, encoding: Encoding) -> Option<usize> {
    let (e, m) = (d.embd as u64, d.mlp as u64);
    let layer = (4 * e)
        .checked_mul(e)?
        .checked_add((2 * e).checked_mul(m)?)?;
    let params = (2 * d.vocab as u64 + d.block as u64)
        .checked_mul(e)?
        .checked_add((d.layers as u64).checked_mul(layer)?)?;
    let body = match encoding {
        Encoding::F32 => params.checked_mul(4)?,
        Encoding::Int8 => {
            let rows = (d.layers as u64)
                .checked_mul((5 * e).checked_add(m)?)?
                .checked_add(2 * d.vocab as u64 + d.block as u64)?;
            rows.checked_mul(4)?
                .checked_add(params.checked_next_multiple_of(4)?)?
        }
    };
    let len = (d.vocab as u64)
        .checked_mul(4)?
        .checked_add(HEADER as u64)?
        .checked_add(body)?;
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

/// Writes the header and the vocabulary of a file of `encoding` into `out`, checks its
/// room, and returns the file's part after them, up to the checksum, and its length.
fn write_head<'o>(
    out: &'o mut [u8],
    vocab: &Vocab,
    d: &Dims,
    encoding: Encoding,
) -> Result<(&'o mut [u8], usize), Error> {
    if vocab.len() != d.vocab {
        return Err(Error::Usage("the vocabulary does not match the weights"));
    }
    let len = encoded_len(d, encoding);
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
    out[..8].copy_from_slice(&encoding.magic());
    let (head, body) = out.split_at_mut(HEADER + 4 * (d.vocab - 1));
    for (slot, word) in head[8..].chunks_exact_mut(4).zip(words.chain(chars)) {
        slot.copy_from_slice(&word.to_le_bytes());
    }
    let body_len = body.len() - 4;
    Ok((&mut body[..body_len], len))
}

/// Ends the file of `len` bytes in `out` with its checksum.
fn seal(out: &mut [u8], len: usize) {
    let crc = CRC.checksum(&out[..len - 4]);
    out[len - 4..len].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the weight file of `weights` and `vocab` into `out`; returns its length.
pub fn write<C: Config>(
    out: &mut [u8],
    vocab: &Vocab,
    weights: &Weights<'_, C, f32>,
) -> Result<usize, Error> {
    let (body, len) = write_head(out, vocab, &weights.dims(), Encoding::F32)?;
    for (slot, p) in body.chunks_exact_mut(4).zip(weights.as_slice()) {
        slot.copy_from_slice(&p.to_le_bytes());
    }
    seal(out, len);
    Ok(len)
}

/// Whether every weight of a row with scale `s` is a finite `f32` (−128 · s included).
fn scale_fits(s: f32) -> bool {
    (s * 128.0).is_finite()
}

/// Quantises `weights` to int8, row by row ([`crate::int8`]), and writes them with
/// `vocab` as an int8 weight file into `out`; returns its length.
pub fn write_int8<C: Config>(
    out: &mut [u8],
    vocab: &Vocab,
    weights: &Weights<'_, C, f32>,
) -> Result<usize, Error> {
    let (layout, params) = (*weights.layout(), weights.as_slice());
    // A NaN would quantise to a silent 0.
    if let Some(index) = params.iter().position(|p| !p.is_finite()) {
        return Err(Error::NonFiniteWeight { index });
    }
    let (body, len) = write_head(out, vocab, &weights.dims(), Encoding::Int8)?;
    let (scales, q) = body.split_at_mut(4 * layout.rows());
    let q: &mut [i8] = bytemuck::cast_slice_mut(q);
    q.fill(0);
    for (t, range, [_, cols]) in layout.tensors() {
        let rows = params[range.clone()]
            .chunks_exact(cols)
            .zip(q[range].chunks_exact_mut(cols));
        let slots = scales[4 * layout.first_row(t)..].chunks_exact_mut(4);
        for ((row, q), slot) in rows.zip(slots) {
            let s = quantize_row(row, q);
            if !scale_fits(s) {
                return Err(Error::Usage(
                    "a weight is too large for int8: its row's scale would overflow",
                ));
            }
            slot.copy_from_slice(&s.to_le_bytes());
        }
    }
    seal(out, len);
    Ok(len)
}

/// A checked weight file, borrowing its bytes.
#[derive(Clone, Debug)]
pub struct WeightFile<'a> {
    dims: Dims,
    vocab: Vocab,
    encoding: Encoding,
    /// The parameters' bytes, as the encoding lays them out.
    params: &'a [u8],
}

fn word(bytes: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(w)
}

impl<'a> WeightFile<'a> {
    /// Checks a weight file: magic, version, length, checksum, shape and vocabulary.
    ///
    /// Never inlined: the checks' temporaries then stay in its own frame, which is gone
    /// before the caller goes on to run the model (on a chip, each 1 KB copy of the
    /// vocabulary in the caller's frame is stack for the whole run).
    #[inline(never)]
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER + 4 {
            return Err(Error::Truncated {
                needed: HEADER + 4,
                found: bytes.len(),
            });
        }
        let encoding = match bytes[..8].try_into() {
            Ok(MAGIC) => Encoding::F32,
            Ok(MAGIC_INT8) => Encoding::Int8,
            _ => return Err(Error::BadMagic),
        };
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
        if checked_len(&dims, encoding) != Some(len) {
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
            encoding,
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
        // Every f32 weight, or every int8 row scale, must be finite; a scale also
        // non-negative, and the padding after the int8 values zero.
        let floats = match encoding {
            Encoding::F32 => params,
            Encoding::Int8 => file.int8_parts().0,
        };
        let mut values = floats
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if let Some(index) = values.clone().position(|w| !finite_bits(w)) {
            return Err(Error::NonFiniteWeight { index });
        }
        if encoding == Encoding::Int8 {
            if values.clone().any(|w| f32::from_bits(w) < 0.0) {
                return Err(Error::Corrupt("an int8 row scale is negative"));
            }
            if values.any(|w| !scale_fits(f32::from_bits(w))) {
                return Err(Error::Corrupt(
                    "an int8 row scale is so large that its weights are not finite",
                ));
            }
            if params[floats.len() + dims.num_params()..]
                .iter()
                .any(|&b| b != 0)
            {
                return Err(Error::Corrupt(
                    "the padding after the int8 weights is not zero",
                ));
            }
        }
        Ok(file)
    }

    /// Bytes of the file, as its header states: any bytes after them are not its.
    pub fn byte_len(&self) -> usize {
        encoded_len(&self.dims, self.encoding)
    }

    /// How the file stores the parameters.
    pub fn encoding(&self) -> Encoding {
        self.encoding
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
    /// An int8 file has no `f32` weights to read in place: see [`Self::int8_weights`]
    /// and [`Self::copy_params`].
    pub fn weights<C: Config>(&self) -> Result<Weights<'a, C, f32>, Error> {
        self.check_in_place::<C>(Encoding::F32)?;
        let params: &'a [f32] =
            bytemuck::try_cast_slice(self.params).map_err(|_| Error::Misaligned)?;
        Weights::new(params, self.dims.vocab)
    }

    /// Whether the parameters can be read in place as `encoding` for `C`.
    fn check_in_place<C: Config>(&self, encoding: Encoding) -> Result<(), Error> {
        self.check::<C>()?;
        match (self.encoding, encoding) {
            (found, wanted) if found == wanted => {}
            (Encoding::Int8, _) => {
                return Err(Error::Usage(
                    "the weights are int8: run them with int8_weights, or dequantise them with copy_params",
                ));
            }
            (Encoding::F32, _) => {
                return Err(Error::Usage(
                    "the weights are f32, not int8: read them with weights",
                ));
            }
        }
        if cfg!(target_endian = "big") {
            return Err(Error::Usage(
                "in-place weights need a little-endian target; use copy_params",
            ));
        }
        Ok(())
    }

    /// The int8 parameters as weights of `C`, read in place with no copy (from a file at a
    /// 4-byte aligned address, as [`Self::weights`]).
    pub fn int8_weights<C: Config>(&self) -> Result<Int8Weights<'a, C>, Error> {
        self.check_in_place::<C>(Encoding::Int8)?;
        let (scales, q) = self.int8_parts();
        let scales: &'a [f32] = bytemuck::try_cast_slice(scales).map_err(|_| Error::Misaligned)?;
        Int8Weights::new(q, scales, self.dims.vocab)
    }

    /// The bytes of an int8 file's row scales, and its values without the padding.
    fn int8_parts(&self) -> (&'a [u8], &'a [i8]) {
        let (scales, q) = self.params.split_at(4 * Layout::new(self.dims).rows());
        (scales, bytemuck::cast_slice(&q[..self.dims.num_params()]))
    }

    /// Copies the parameters of `C` into `out` as `f32`, from any alignment and on any
    /// target; int8 weights are dequantised ([`crate::int8::dequantize_row`]), so that `out`
    /// computes what [`Self::int8_weights`] computes.
    pub fn copy_params<C: Config>(&self, out: &mut [f32]) -> Result<(), Error> {
        self.check::<C>()?;
        let layout = Layout::new(self.dims);
        if out.len() != layout.len() {
            return Err(Error::ParamCount {
                expected: layout.len(),
                found: out.len(),
            });
        }
        let float = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        match self.encoding {
            Encoding::F32 => {
                for (p, b) in out.iter_mut().zip(self.params.chunks_exact(4)) {
                    *p = float(b);
                }
            }
            Encoding::Int8 => {
                let (scales, q) = self.int8_parts();
                // The scales are copied row by row, so a misaligned file still reads.
                for (t, range, [rows, cols]) in layout.tensors() {
                    let first = layout.first_row(t);
                    let out = out[range.clone()].chunks_exact_mut(cols);
                    let rows = q[range].chunks_exact(cols).zip(
                        scales[4 * first..4 * (first + rows)]
                            .chunks_exact(4)
                            .map(float),
                    );
                    for (out, (q, s)) in out.zip(rows) {
                        dequantize_row(q, s, out);
                    }
                }
            }
        }
        Ok(())
    }
}
