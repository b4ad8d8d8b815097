//! The one error type of the crate. Nothing in the core panics on bad input.

use crate::config::Dims;

/// Everything that can go wrong in the core, from a stray character to a corrupt file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A character that the vocabulary does not contain.
    #[error("character {0:?} is not in the vocabulary")]
    UnknownChar(char),
    /// More distinct characters than the vocabulary can hold.
    #[error("{found} distinct characters, but this model holds at most {capacity}")]
    TooManyChars {
        /// Distinct characters seen (at least).
        found: usize,
        /// Characters the model can hold (its vocabulary capacity minus BOS).
        capacity: usize,
    },
    /// A batch already holds its maximum number of names.
    #[error("a batch holds at most {max} names")]
    BatchFull {
        /// The config's batch capacity.
        max: usize,
    },
    /// A token id that the model's vocabulary does not have.
    #[error("token {token} is outside a vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The token id.
        token: usize,
        /// Tokens in the vocabulary.
        vocab: usize,
    },
    /// A call out of order, such as a backward pass with no forward pass before it.
    #[error("API misuse: {0}")]
    Usage(&'static str),
    /// A training step was asked to run on no names.
    #[error("the batch is empty")]
    EmptyBatch,
    /// A decoder was fed more tokens than the context holds.
    #[error("the context is full: the model sees at most {block} positions")]
    ContextFull {
        /// The context length.
        block: usize,
    },
    /// A sampling temperature that is negative or not finite.
    #[error("the temperature must be finite and not negative")]
    BadTemperature,
    /// The model produced a value that is not finite, or weights that sum to zero:
    /// typically corrupt or diverged weights.
    #[error("the model produced a non-finite value; the weights may be corrupt or diverged")]
    NonFinite,
    /// The autograd arena has no room for another node.
    #[error("the autograd arena is full ({capacity} nodes)")]
    ArenaFull {
        /// Nodes the arena holds.
        capacity: usize,
    },
    /// An output buffer that cannot hold the result.
    #[error("the output buffer holds {found} bytes, {needed} are needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        found: usize,
    },
    /// The text sink of a generated name refused a character.
    #[error("the output sink is full")]
    OutputFull,
    /// A parameter or gradient block of the wrong length for the model.
    #[error("a parameter block of {found} values, this model needs {expected}")]
    ParamCount {
        /// Values the model needs.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A weight file shorter than its header says.
    #[error("the weight file is truncated: {found} bytes of {needed}")]
    Truncated {
        /// Bytes the file should have.
        needed: usize,
        /// Bytes present.
        found: usize,
    },
    /// Bytes that do not start with the weight file's magic.
    #[error("not a microgpt weight file (bad magic bytes)")]
    BadMagic,
    /// A weight file of another format version.
    #[error("weight file version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The checksum does not match: some byte of the file changed.
    #[error("the weight file is corrupt: checksum {computed:#010x}, the file says {stored:#010x}")]
    ChecksumMismatch {
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// Weights of another model shape.
    #[error("the weights are for a model of {found}, this one is {expected}")]
    ConfigMismatch {
        /// The shape expected (vocabulary as capacity).
        expected: Dims,
        /// The shape found.
        found: Dims,
    },
    /// A weight that is NaN or infinite: the model it came from had diverged.
    #[error("weight {index} is not a finite number (NaN or infinite): the model had diverged")]
    NonFiniteWeight {
        /// Its index in the flat parameter block.
        index: usize,
    },
    /// A header that passed the checksum but makes no sense.
    #[error("the weight file is inconsistent: {0}")]
    Corrupt(&'static str),
    /// Weight data at an address that is not 4-byte aligned, so it cannot be read in
    /// place as `f32`.
    #[error("the weight data is not 4-byte aligned, so it cannot be read in place")]
    Misaligned,
}
