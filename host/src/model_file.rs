//! Weight files on disk: aligned reads, atomic writes, and whether this build holds
//! the shape of a file.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use microgpt_core::weights_format::{encoded_len, write};
use microgpt_core::{Config, Dims, Vocab, WeightFile, Weights, find, presets};

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
        "{what} has the shape embd {}, {} heads, {} layers, block {}, mlp {}, which this build does not include; \
         the shapes it includes (each for up to 255 distinct characters) are:\n{}",
        dims.embd,
        dims.heads,
        dims.layers,
        dims.block,
        dims.mlp,
        shapes_list()
    )
}

/// The bytes of a weight file, 4-byte aligned so that the weights are read in place.
pub struct WeightBytes {
    words: Vec<u32>,
    len: usize,
    path: String,
}

impl WeightBytes {
    /// Reads a weight file.
    pub fn read(path: &Path) -> Result<WeightBytes> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the weights {}", path.display()))?;
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
        Ok(WeightBytes {
            words,
            len: bytes.len(),
            path: path.display().to_string(),
        })
    }

    /// The checked file, with a message that names it.
    pub fn parse(&self) -> Result<WeightFile<'_>> {
        let bytes = &bytemuck::cast_slice::<u32, u8>(&self.words)[..self.len];
        WeightFile::parse(bytes)
            .map_err(|e| anyhow!("{} is not a usable weight file: {e}", self.path))
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

/// The weights of `C` from a checked file, read in place.
pub fn weights_of<'a, C: Config>(file: &WeightFile<'a>) -> Result<Weights<'a, C>> {
    file.weights::<C>().map_err(|e| anyhow!("{e}"))
}

/// Encodes weights and their vocabulary as a weight file.
pub fn encode<C: Config>(vocab: &Vocab, weights: &Weights<'_, C>) -> Result<Vec<u8>> {
    let mut out = vec![0u8; encoded_len(&weights.dims())];
    write(&mut out, vocab, weights)?;
    Ok(out)
}

/// Writes a file atomically: to a temporary file beside it, then renamed over it, so an
/// interrupted run never leaves half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    // Temporary files are private (0600); the result should be an ordinary file.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
