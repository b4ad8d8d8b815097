//! Criterion benchmarks of the SIMD kernels against the scalar ones, on microgpt's
//! shapes: `cargo bench -p microgpt --bench kernels`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use microgpt::simd::Simd;
use microgpt_core::{Kernels, Matrix, PyRandom, Scalar};

fn random(rng: &mut PyRandom, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random() as f32 * 2.0 - 1.0).collect()
}

fn transpose(w: &[f32], cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    (0..rows * cols)
        .map(|i| w[(i % rows) * cols + i / rows])
        .collect()
}

fn softmax(c: &mut Criterion) {
    let mut rng = PyRandom::new(1);
    for n in [4, 27] {
        let x = random(&mut rng, n);
        let mut y = x.clone();
        c.bench_function(&format!("softmax {n} scalar"), |b| {
            b.iter(|| {
                y.copy_from_slice(&x);
                <Scalar as Kernels<f32>>::softmax(black_box(&mut y))
            })
        });
        c.bench_function(&format!("softmax {n} simd"), |b| {
            b.iter(|| {
                y.copy_from_slice(&x);
                Simd::softmax(black_box(&mut y))
            })
        });
    }
}

/// The softmaxes of training: a position's 4 heads of attention (rows of 16, the first
/// `n` live) and a batch's logits (112 rows of 27).
fn softmax_rows(c: &mut Criterion) {
    let mut rng = PyRandom::new(1);
    for (rows, stride, n) in [(4, 16, 5), (4, 16, 12), (112, 27, 27)] {
        let x = random(&mut rng, rows * stride);
        let mut y = x.clone();
        c.bench_function(&format!("softmax rows {rows}x{n} of {stride} simd"), |b| {
            b.iter(|| {
                y.copy_from_slice(&x);
                Simd::softmax_rows(black_box(&mut y), stride, n)
            })
        });
    }
}

/// One forward and backward product of a batch through an MLP's first matrix: 112
/// rows (16 names) of micro's 16 → 64, and 224 rows (32 names) of makemore's 64 → 256.
fn products(c: &mut Criterion) {
    for shape in [(112, 16, 64), (224, 64, 256), (224, 64, 64)] {
        product(c, shape);
    }
}

fn product(c: &mut Criterion, (rows, n_in, n_out): (usize, usize, usize)) {
    let mut rng = PyRandom::new(2);
    let (w, x, d) = (
        random(&mut rng, n_out * n_in),
        random(&mut rng, rows * n_in),
        random(&mut rng, rows * n_out),
    );
    let t = transpose(&w, n_in);
    let m = Matrix {
        w: &w,
        t: Some(&t),
        cols: n_in,
    };
    let mut out = vec![0.0; rows * n_out];
    c.bench_function(
        &format!("matmul forward {rows}x{n_in}x{n_out} scalar"),
        |b| b.iter(|| <Scalar as Kernels<f32>>::matmul_forward(&mut out, black_box(&x), m)),
    );
    c.bench_function(&format!("matmul forward {rows}x{n_in}x{n_out} simd"), |b| {
        b.iter(|| Simd::matmul_forward(&mut out, black_box(&x), m))
    });
    let (mut dx, mut dw) = (vec![0.0; rows * n_in], vec![0.0; n_out * n_in]);
    c.bench_function(
        &format!("matmul backward {rows}x{n_in}x{n_out} scalar"),
        |b| {
            b.iter(|| {
                <Scalar as Kernels<f32>>::matmul_backward(&mut dx, &mut dw, black_box(&d), &x, m)
            })
        },
    );
    c.bench_function(
        &format!("matmul backward {rows}x{n_in}x{n_out} simd"),
        |b| b.iter(|| Simd::matmul_backward(&mut dx, &mut dw, black_box(&d), &x, m)),
    );
    // The two halves of the backward: the input gradient alone (an empty weight
    // gradient), then the weight gradient alone (an empty input gradient).
    c.bench_function(
        &format!("matmul backward {rows}x{n_in}x{n_out} simd, input gradient"),
        |b| b.iter(|| Simd::matmul_backward(&mut dx, &mut [], black_box(&d), &x, m)),
    );
    c.bench_function(
        &format!("matmul backward {rows}x{n_in}x{n_out} simd, weight gradient"),
        |b| b.iter(|| Simd::matmul_backward(&mut [], &mut dw, black_box(&d), &x, m)),
    );
}

criterion_group!(benches, softmax, softmax_rows, products);
criterion_main!(benches);
