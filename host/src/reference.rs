//! `microgpt reference`: microgpt.py's output, byte for byte, from the core's scalar
//! autograd engine with the C library's maths (what CPython's `math` module calls).

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use microgpt_core::microgpt::{Moments, arena_nodes, run};
use microgpt_core::{Math, Node, Vocab};

use crate::dataset::Dataset;

/// The platform's maths: std's `f64` methods call the C library on Linux, as CPython
/// does.
pub struct Glibc;

impl Math<f64> for Glibc {
    fn exp(x: f64) -> f64 {
        x.exp()
    }
    fn ln(x: f64) -> f64 {
        x.ln()
    }
    fn pow(x: f64, y: f64) -> f64 {
        // Opaque to the optimizer, which would turn pow(x, 0.5) into sqrt(x): the C
        // library's pow is not always that close.
        x.powf(black_box(y))
    }
    fn sqrt(x: f64) -> f64 {
        x.sqrt()
    }
    fn sin(x: f64) -> f64 {
        x.sin()
    }
    fn cos(x: f64) -> f64 {
        x.cos()
    }
}

/// Lets the core's line writer print to stdout.
struct Stdout<W: Write>(W);

impl<W: Write> std::fmt::Write for Stdout<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write_all(s.as_bytes()).map_err(|_| std::fmt::Error)
    }
}

/// Runs microgpt.py's program on `data` and prints its output; timing goes to stderr.
pub fn reference(data: &Path, seed: i64, steps: usize) -> Result<()> {
    let dataset = Dataset::load(data)?;
    let mut docs = dataset.docs;
    let vocab = Vocab::from_chars(docs.iter().flat_map(|d| d.chars()))?;
    let nodes = arena_nodes(vocab.len());
    let mut arena = vec![Node::<f64>::EMPTY; nodes];
    let mut moments: Box<Moments> = bytemuck::zeroed_box();
    let start = Instant::now();
    let mut out = Stdout(std::io::BufWriter::new(std::io::stdout().lock()));
    run::<Glibc, _, _>(&mut docs, seed, steps, &mut arena, &mut moments, &mut out)
        .context("the reference run failed")?;
    out.0.flush()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "reference: {steps} steps in {secs:.2} s ({:.3} ms per step), arena of {nodes} nodes ({:.1} MB)",
        secs * 1e3 / steps.max(1) as f64,
        (nodes * size_of::<Node<f64>>()) as f64 / 1e6
    );
    Ok(())
}
