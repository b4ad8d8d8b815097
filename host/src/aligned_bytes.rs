//! Bytes kept 4-byte aligned, so that a weight file's `f32` parameters are read in
//! place ([`microgpt_core::WeightFile::weights`] needs it), as they are from flash.

/// A copy of some bytes in `u32` words, whatever the alignment of the original.
#[derive(Clone, Debug, Default)]
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    /// A 4-byte aligned copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes, starting at a 4-byte aligned address.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u32, u8>(&self.words)[..self.len]
    }
}
