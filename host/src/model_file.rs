//! Weight files on disk: aligned reads, atomic writes, and which config a file holds.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use microgpt_core::weights_format::{encoded_len, write};
use microgpt_core::{Config, Dims, Makemore, Micro, Vocab, WeightFile, Weights};

/// The model configs the tool knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelConfig {
    /// microgpt.py's model: 16 wide, 1 layer, 4,192 parameters.
    Micro,
    /// makemore's transformer: 64 wide, 4 layers, 201,088 parameters.
    Makemore,
}

impl ModelConfig {
    /// Every config the tool knows, with its dimensions (vocabulary as capacity).
    pub const ALL: [(ModelConfig, Dims); 2] = [
        (ModelConfig::Micro, Micro::DIMS),
        (ModelConfig::Makemore, Makemore::DIMS),
    ];

    /// The config whose shape these dimensions have (any vocabulary that fits).
    pub fn of(dims: &Dims) -> Option<ModelConfig> {
        let fits = |d: &Dims| dims.with_vocab(d.vocab) == *d && dims.vocab <= d.vocab;
        Self::ALL.into_iter().find(|(_, d)| fits(d)).map(|(c, _)| c)
    }
}

/// Calls a generic function with the config type named by a [`ModelConfig`].
#[macro_export]
macro_rules! with_config {
    ($config:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $config {
            $crate::model_file::ModelConfig::Micro => $f::<microgpt_core::Micro>($($arg),*),
            $crate::model_file::ModelConfig::Makemore => $f::<microgpt_core::Makemore>($($arg),*),
        }
    };
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

    /// The checked file and the config its shape belongs to.
    pub fn model(&self) -> Result<(WeightFile<'_>, ModelConfig)> {
        let file = self.parse()?;
        let config = ModelConfig::of(&file.dims()).ok_or_else(|| {
            anyhow!(
                "{} holds a model of {:?}, which matches no known config (micro, makemore)",
                self.path,
                file.dims()
            )
        })?;
        Ok((file, config))
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
