//! Weight files on disk, `f32` or int8: reads, and whether this build holds the shape
//! of a file (writes go through [`crate::safe_write`]).

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use microgpt_core::weights_format::{Encoding, encoded_len, write, write_int8};
use microgpt_core::{Config, Dims, Error, Params, Vocab, WeightFile, Weights, find, presets};

use crate::aligned_bytes::AlignedBytes;
use crate::training::CHECKPOINT_FORMAT;

/// One line per shipped shape: its preset, dimensions and parameters on names.
pub fn shapes_list() -> String {
    presets()
        .map(|s| {
            let d = s.dims;
            format!(
                "  {:<9} --embd {} --heads {} --layers {} --block {}  ({} parameters on a-z)",
                s.preset,
                d.embd,
                d.heads,
                d.layers,
                d.block,
                d.with_vocab(27).num_params()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The error for a model shape that no shipped config holds, with the shapes that are.
pub fn not_shipped(what: &str, dims: &Dims) -> anyhow::Error {
    if dims.vocab > microgpt_core::tokenizer::MAX_TOKENS {
        return anyhow!(
            "{what} has {} tokens; a model holds at most {}",
            dims.vocab,
            microgpt_core::tokenizer::MAX_TOKENS
        );
    }
    anyhow!(
        "{what} has the shape {dims}, which this build does not include; \
         the shapes it includes (each for up to 255 distinct characters) are:\n{}",
        shapes_list()
    )
}

/// The bytes of a weight file, 4-byte aligned so that the weights are read in place.
pub struct WeightBytes {
    bytes: AlignedBytes,
    path: String,
}

impl WeightBytes {
    /// Reads a weight file.
    pub fn read(path: &Path) -> Result<WeightBytes> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the weights {}", path.display()))?;
        Ok(Self::from_bytes(&bytes, path.display().to_string()))
    }

    /// The bytes of a weight file read otherwise; `path` names it in messages.
    pub fn from_bytes(bytes: &[u8], path: String) -> WeightBytes {
        WeightBytes {
            bytes: AlignedBytes::new(bytes),
            path,
        }
    }

    /// The checked file, with a message that names it and says what to do. A file with
    /// bytes after its end is refused (it is damaged, or two files joined), and so is a
    /// checkpoint or a safetensors file given in place of weights, each by name.
    pub fn parse(&self) -> Result<WeightFile<'_>> {
        let bytes = self.bytes.bytes();
        let file = WeightFile::parse(bytes).map_err(|e| {
            let format = safetensors::SafeTensors::read_metadata(bytes)
                .ok()
                .and_then(|(_, meta)| meta.metadata().as_ref()?.get("format").cloned());
            match (e, format.as_deref()) {
                (Error::BadMagic, Some(CHECKPOINT_FORMAT)) => anyhow!(
                    "{} is a training checkpoint, not a weight file: its weights are in the file of the same name without .ckpt, and `microgpt train --resume` continues from it",
                    self.path
                ),
                (Error::BadMagic, Some(_)) => anyhow!(
                    "{} is a safetensors file, not a weight file: make one of it with `microgpt import --from {} --out WEIGHTS`",
                    self.path,
                    self.path
                ),
                (e, _) => anyhow!("{} is not a usable weight file: {e}", self.path),
            }
        })?;
        if file.byte_len() != bytes.len() {
            return Err(anyhow!(
                "{} is not a usable weight file: it has {} bytes after the {} of its weights (damaged, or two files joined)",
                self.path,
                bytes.len() - file.byte_len(),
                file.byte_len()
            ));
        }
        Ok(file)
    }

    /// The checked file, whose shape a shipped config holds.
    pub fn model(&self) -> Result<WeightFile<'_>> {
        let file = self.parse()?;
        if find(&file.dims()).is_none() {
            return Err(not_shipped(
                &format!("the model in {}", self.path),
                &file.dims(),
            ));
        }
        Ok(file)
    }
}

/// The weights of `C` from a checked file, as `f32` in RAM: int8 weights dequantised,
/// which is what the chip computes from their bytes, bit for bit.
pub fn params_of<C: Config>(file: &WeightFile<'_>) -> Result<Box<Params<C>>> {
    let mut params: Box<Params<C>> = bytemuck::zeroed_box();
    params.reset(file.vocab().len())?;
    file.copy_params::<C>(params.as_mut_slice())?;
    Ok(params)
}

/// Encodes weights and their vocabulary as a weight file of `encoding` (int8 weights
/// are quantised here).
pub fn encode<C: Config>(
    vocab: &Vocab,
    weights: &Weights<'_, C>,
    encoding: Encoding,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; encoded_len(&weights.dims(), encoding)];
    match encoding {
        Encoding::F32 => write(&mut out, vocab, weights)?,
        Encoding::Int8 => write_int8(&mut out, vocab, weights)?,
    };
    Ok(out)
}
