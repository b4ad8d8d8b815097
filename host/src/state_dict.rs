//! safetensors files under microgpt's `state_dict` names, for PyTorch and numpy users.
//!
//! Each tensor is a row-major matrix named as in microgpt.py (`wte`, `wpe`, `lm_head`,
//! `layer0.attn_wq`, ...). The vocabulary and the head count, which shapes cannot
//! tell, travel in the metadata (`vocab`, `n_head`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use microgpt_core::weights_format::Encoding;
use microgpt_core::{Config, Dims, Layout, SHIPPED, Vocab, Weights, find, with_config};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::model_file::{encode, not_shipped};
use crate::safe_write::write_atomic;

/// Writes weights as safetensors (F32), atomically.
pub fn export<C: Config>(path: &Path, vocab: &Vocab, w: &Weights<'_, C>) -> Result<()> {
    let mut tensors = Vec::new();
    for (tensor, range, shape) in w.layout().tensors() {
        tensors.push((
            tensor.to_string(),
            TensorView::new(
                Dtype::F32,
                shape.to_vec(),
                bytemuck::cast_slice(&w.as_slice()[range]),
            )?,
        ));
    }
    let meta = HashMap::from([
        ("format".to_owned(), "microgpt".to_owned()),
        ("config".to_owned(), C::NAME.to_owned()),
        ("vocab".to_owned(), vocab.chars().iter().collect()),
        ("n_head".to_owned(), C::DIMS.heads.to_string()),
    ]);
    write_atomic(path, &safetensors::serialize(tensors, Some(meta))?)
}

/// Reads a safetensors state dict and returns it as a weight file. The vocabulary
/// comes from the metadata, or else from `fallback` (a dataset's).
pub fn import(path: &Path, fallback: Option<&Vocab>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    import_bytes(&bytes, path, fallback)
}

/// [`import`] of a file's bytes; `path` names it in messages. Any bytes give a weight
/// file or an error, never a panic (`tests/fuzz` checks it).
pub fn import_bytes(bytes: &[u8], path: &Path, fallback: Option<&Vocab>) -> Result<Vec<u8>> {
    let bad = |what: String| anyhow!("{} is not a usable state dict: {what}", path.display());
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(e.to_string()))?
        .1
        .metadata()
        .clone()
        .unwrap_or_default();
    let shape = |name: &str| -> Result<Vec<usize>> {
        Ok(st
            .tensor(name)
            .map_err(|_| bad(format!("no tensor {name:?}")))?
            .shape()
            .to_vec())
    };
    let (wte, wpe, fc1) = (shape("wte")?, shape("wpe")?, shape("layer0.mlp_fc1")?);
    for (name, shape) in [("wte", &wte), ("wpe", &wpe), ("layer0.mlp_fc1", &fc1)] {
        ensure!(
            shape.len() == 2,
            bad(format!("{name} has shape {shape:?}, a matrix is needed"))
        );
    }
    let layers = (0..)
        .take_while(|l| st.tensor(&format!("layer{l}.attn_wq")).is_ok())
        .count();
    let (vocab_len, embd, block, mlp) = (wte[0], wte[1], wpe[0], fc1[0]);

    let vocab = match (meta.get("vocab"), fallback) {
        (Some(chars), _) => Vocab::from_chars(chars.chars()).map_err(|e| bad(e.to_string()))?,
        (None, Some(v)) => v.clone(),
        (None, None) => bail!(
            "{} does not name its characters (no \"vocab\" metadata); give --data with the dataset it was trained on",
            path.display()
        ),
    };
    ensure!(
        vocab.len() == vocab_len,
        bad(format!(
            "the vocabulary has {} tokens but wte has {vocab_len} rows",
            vocab.len()
        ))
    );

    // The head count is not in any shape: it comes from the metadata, or else from the
    // one shipped config of this shape.
    let shape_of = |heads: usize| Dims {
        vocab: vocab_len,
        embd,
        heads,
        layers,
        block,
        mlp,
    };
    let heads = match meta.get("n_head") {
        Some(h) => h
            .parse()
            .map_err(|_| bad(format!("n_head {h:?} is not a number")))?,
        None => SHIPPED
            .iter()
            .map(|s| s.dims.heads)
            .find(|&h| find(&shape_of(h)).is_some())
            .unwrap_or(0),
    };
    let dims = shape_of(heads);
    ensure!(
        find(&dims).is_some(),
        not_shipped(&format!("the state dict {}", path.display()), &dims)
    );
    let layout = Layout::new(dims);
    let mut flat = vec![0f32; layout.len()];
    for (tensor, range, want) in layout.tensors() {
        let name = tensor.to_string();
        let t = st
            .tensor(&name)
            .map_err(|_| bad(format!("no tensor {name:?}")))?;
        ensure!(
            t.shape() == want,
            bad(format!(
                "{name} has shape {:?}, expected {want:?}",
                t.shape()
            ))
        );
        let out = &mut flat[range];
        match t.dtype() {
            Dtype::F32 => out
                .iter_mut()
                .zip(t.data().chunks_exact(4))
                .for_each(|(o, b)| *o = f32::from_le_bytes(b.try_into().unwrap())),
            Dtype::F64 => out
                .iter_mut()
                .zip(t.data().chunks_exact(8))
                .for_each(|(o, b)| *o = f64::from_le_bytes(b.try_into().unwrap()) as f32),
            other => bail!(bad(format!(
                "{name} is {other:?}; F32 and F64 are supported"
            ))),
        }
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            bail!(bad(format!(
                "{name} holds {} at index {i}; weights must be finite numbers",
                out[i]
            )));
        }
    }
    with_config!(dims, encode_flat(&vocab, &flat))
        .unwrap_or_else(|| Err(not_shipped("the state dict", &dims)))
}

fn encode_flat<C: Config>(vocab: &Vocab, flat: &[f32]) -> Result<Vec<u8>> {
    encode(vocab, &Weights::<C>::new(flat, vocab.len())?, Encoding::F32)
}
