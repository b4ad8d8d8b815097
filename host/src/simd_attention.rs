//! Attention for heads 4 wide (microgpt's 16 = 4 heads of 4), with the bits of the
//! general attention on [`Simd`]'s kernels.
//!
//! The general attention ([`ops::attention_forward`]) makes a 4-value dot product or
//! update per head and position, each a call that fills a quarter of a register. Here
//! the lanes run across positions or heads instead:
//! - the forward of a name of up to 16 positions puts 8 query positions in a register:
//!   a score is a register of 8 positions for one key, and a softmax's maximum and total
//!   become operations between registers, with no sum across lanes (see
//!   `by_positions`);
//! - the backward, and the forward of longer names, put 4 heads in 16 lanes. With the
//!   keys of a name kept transposed (one row of positions per value), one register holds
//!   the scores of 16 positions: 4 products, added from left to right as [`Simd`]'s
//!   `dot` adds them. A weighted sum, `Σ_s att[h, s] · v_s,h`, runs over the positions
//!   in order, as the general one's updates do, with each head's weight spread over its
//!   4 lanes: one fused multiply-add per position for 4 heads.
//!
//! Each output is made by the same operations in the same order as the general path's,
//! so the bits are the same (see the tests); only the number of instructions changes.

use std::cell::RefCell;

use microgpt_core::{Dims, Kernels, Row, ops};
use wide::{f32x8, f32x16};

use crate::simd::{self, Simd};

/// Lanes of a register here: 4 heads of 4.
const LANES: usize = 16;

/// Whether [`forward`] and [`backward`] serve the shape `d`: heads 4 wide, and a width
/// and a context of whole registers.
pub fn serves(d: &Dims) -> bool {
    d.head_dim() == 4 && d.embd.is_multiple_of(LANES) && d.block.is_multiple_of(LANES)
}

thread_local! {
    /// The transposed keys and values of `by_rows` (the forward of names past 16
    /// positions) and of [`backward`], kept from call to call: a fresh zeroed buffer at
    /// each call cost 2% of microgpt's schedule.
    static TRANSPOSED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's buffer for transposed keys and values, `len` long. Its
/// values are left from earlier calls: a name's row writes its column before any row
/// reads it, and the columns past a row's position are read only into lanes that the
/// softmax masks or that no output reads.
fn with_transposed<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    TRANSPOSED.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Sixteen lanes from the start of `s`.
#[inline(always)]
fn load(s: &[f32]) -> f32x16 {
    f32x16::new(s[..LANES].try_into().expect("a slice of 16"))
}

/// `v` into the first sixteen values of `s`.
#[inline(always)]
fn store(s: &mut [f32], v: f32x16) {
    s[..LANES].copy_from_slice(v.as_array());
}

/// Column `s` of the 4 heads from `h0` in `m` (a row of `t` per head), each head's
/// value spread over its 4 lanes.
#[inline(always)]
fn spread(m: &[f32], t: usize, h0: usize, s: usize) -> f32x16 {
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| m[(h0 + i) * t + s]);
    f32x16::new([a, a, a, a, b, b, b, b, c, c, c, c, d, d, d, d])
}

/// Writes row `r`'s vector of `m` (rows of `e`) as column `pos` of `mt` (rows of `t`).
#[inline(always)]
fn put_column(mt: &mut [f32], m: &[f32], r: usize, pos: usize, e: usize, t: usize) {
    for (c, &x) in m[r * e..][..e].iter().enumerate() {
        mt[c * t + pos] = x;
    }
}

/// `out[h·t + s] = then(Σ_i x[4h + i] · mt[(4h + i)·t + s])` for every head and the
/// positions `0..n` (rounded up to whole registers, the rest of a row being scratch):
/// each product rounded, then added from left to right, as [`Simd`]'s `dot` of 4
/// values.
#[inline(always)]
fn head_dots(
    out: &mut [f32],
    x: &[f32],
    mt: &[f32],
    t: usize,
    n: usize,
    then: impl Fn(f32x16) -> f32x16,
) {
    for (h, x) in x.chunks_exact(4).enumerate() {
        for j in (0..n).step_by(LANES) {
            let col = |i: usize| load(&mt[(4 * h + i) * t + j..]);
            let s = f32x16::splat(x[0]) * col(0)
                + f32x16::splat(x[1]) * col(1)
                + f32x16::splat(x[2]) * col(2)
                + f32x16::splat(x[3]) * col(3);
            store(&mut out[h * t + j..], then(s));
        }
    }
}

/// [`ops::attention_forward`] on [`Simd`]'s kernels, name by name: `by_positions` for
/// names of up to 16 positions, `by_rows` for longer ones; for shapes that [`serves`]
/// accepts.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    y: &mut [f32],
    att: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rows: &[Row],
    d: &Dims,
) {
    let (e, t, heads) = (d.embd, d.block, d.heads);
    let mut r0 = 0;
    while r0 < rows.len() {
        // A name: a row at position 0 and the rows after it, up to the next such row.
        let len = 1 + rows[r0 + 1..].iter().take_while(|r| r.pos != 0).count();
        let one_name = if len <= 2 * POSITIONS {
            by_positions
        } else {
            by_rows
        };
        let (name, att_rows) = (
            r0 * e..(r0 + len) * e,
            r0 * heads * t..(r0 + len) * heads * t,
        );
        let (q, k, v) = (&q[name.clone()], &k[name.clone()], &v[name.clone()]);
        one_name(&mut y[name], &mut att[att_rows], q, k, v, d);
        r0 += len;
    }
}

/// Query positions in a register of `by_positions`.
const POSITIONS: usize = 8;

/// [`forward`] of one name of at most 16 positions, with the lanes across its query
/// positions: the scores of 8 positions for one key make a register, so a softmax's
/// maximum and total over the keys are operations between registers, with no sum across
/// lanes, and its division is one for 8 positions. Each value is the row-wise path's:
/// - a score is `((q₀k₀ + q₁k₁) + q₂k₂) + q₃k₃`, then scaled, as [`head_dots`] makes it;
/// - the total adds the keys `s` and `s + 8`, then those 8 sums in the tree of `wide`'s
///   `reduce_add` (lanes `j` and `j + 4`, then `j` and `j + 2`, then the two left), as
///   [`Simd::softmax_rows`] does for a row of up to 16; the keys past a row's position
///   add exact zeros;
/// - a weighted sum is a chain of fused multiply-adds from 0, key by key. Past a row's
///   position the weights are 0, which leave the sum as it is: a chain that starts at
///   `+0` never holds `-0` (the values are finite while training has not diverged).
fn by_positions(y: &mut [f32], att: &mut [f32], q: &[f32], k: &[f32], v: &[f32], d: &Dims) {
    let (e, t) = (d.embd, d.block);
    let len = q.len() / e;
    let scale = f32x8::splat(ops::attention_scale::<f32>(d));
    let lanes = f32x8::new([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    for b in (0..len).step_by(POSITIONS) {
        // Query positions b.. in the lanes; the lanes past the name repeat its last row.
        let queries = len.min(b + POSITIONS) - b;
        let position = lanes + f32x8::splat(b as f32);
        let keys = b + queries;
        // 8 values of q (two heads) at a time, transposed: value c of lane i in qt[c].
        for c8 in (0..e).step_by(POSITIONS) {
            let qt = f32x8::transpose(core::array::from_fn(|i| {
                simd::load(&q[(b + i.min(queries - 1)) * e + c8..])
            }));
            let mut yt = [f32x8::ZERO; POSITIONS];
            for (hh, (qt, yt)) in qt.chunks_exact(4).zip(yt.chunks_exact_mut(4)).enumerate() {
                let c = c8 + 4 * hh;
                let h = c / 4;
                let mut scores = [f32x8::splat(f32::NEG_INFINITY); 2 * POSITIONS];
                let mut max = f32x8::splat(f32::NEG_INFINITY);
                for (s, score) in scores[..keys].iter_mut().enumerate() {
                    let ks = &k[s * e + c..][..4];
                    let x = qt[0] * f32x8::splat(ks[0])
                        + qt[1] * f32x8::splat(ks[1])
                        + qt[2] * f32x8::splat(ks[2])
                        + qt[3] * f32x8::splat(ks[3]);
                    let live = position.simd_ge(f32x8::splat(s as f32));
                    *score = live.select(x * scale, f32x8::splat(f32::NEG_INFINITY));
                    max = max.fast_max(*score);
                }
                let mut ex = [f32x8::ZERO; 2 * POSITIONS];
                for (ex, &score) in ex[..keys].iter_mut().zip(&scores) {
                    *ex = simd::exp(score - max);
                }
                let p: [f32x8; POSITIONS] = core::array::from_fn(|j| ex[j] + ex[j + POSITIONS]);
                let pair = |j: usize| (p[j] + p[j + 4]) + (p[j + 2] + p[j + 6]);
                let inv = f32x8::ONE / (pair(0) + pair(1));
                let weights = ex.map(|ex| ex * inv);
                let mut sums = [f32x8::ZERO; 4];
                for (s, &w) in weights[..keys].iter().enumerate() {
                    let vs = &v[s * e + c..][..4];
                    for (sum, &v) in sums.iter_mut().zip(vs) {
                        *sum = w.mul_add(f32x8::splat(v), *sum);
                    }
                }
                yt.copy_from_slice(&sums);
                // The weights by rows: row b + i's of keys 8j.. in lanes of tile j.
                for (j, block) in weights
                    .chunks_exact(POSITIONS)
                    .take(keys.div_ceil(POSITIONS))
                    .enumerate()
                {
                    let tile = f32x8::transpose(block.try_into().expect("8 registers"));
                    for (i, w) in tile[..queries].iter().enumerate() {
                        simd::store(&mut att[((b + i) * d.heads + h) * t + POSITIONS * j..], *w);
                    }
                }
            }
            for (i, row) in f32x8::transpose(yt)[..queries].iter().enumerate() {
                simd::store(&mut y[(b + i) * e + c8..], *row);
            }
        }
    }
}

/// [`forward`] of one name, row by row: each row's scores of 16 keys to a register per
/// head, its 4 heads' softmaxes together, then its weighted sums.
fn by_rows(y: &mut [f32], att: &mut [f32], q: &[f32], k: &[f32], v: &[f32], d: &Dims) {
    let (e, t, heads) = (d.embd, d.block, d.heads);
    let scale = f32x16::splat(ops::attention_scale::<f32>(d));
    // The keys of the name, transposed: value `c` of position `s` at `c·t + s`. Each row
    // adds its own key.
    with_transposed(e * t, |kt| {
        for pos in 0..q.len() / e {
            let n = pos + 1;
            put_column(kt, k, pos, pos, e, t);
            let att = &mut att[pos * heads * t..][..heads * t];
            head_dots(att, &q[pos * e..][..e], kt, t, n, |s| s * scale);
            Simd::softmax_rows(att, t, n);
            for (c, y) in y[pos * e..][..e].chunks_exact_mut(LANES).enumerate() {
                let mut acc = f32x16::ZERO;
                for s in 0..n {
                    let vs = load(&v[s * e + c * LANES..]);
                    acc = spread(att, t, 4 * c, s).mul_add(vs, acc);
                }
                store(y, acc);
            }
        }
    });
}

/// [`ops::attention_backward`] on [`Simd`]'s kernels, across heads; for shapes that
/// [`serves`] accepts.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    datt: &mut [f32],
    dy: &[f32],
    att: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rows: &[Row],
    d: &Dims,
) {
    let (e, t, heads) = (d.embd, d.block, d.heads);
    let scale = f32x16::splat(ops::attention_scale::<f32>(d));
    let datt = &mut datt[..heads * t];
    with_transposed(2 * e * t, |kv| {
        let (kt, vt) = kv.split_at_mut(e * t);
        for (r, row) in rows.iter().enumerate() {
            let (pos, n) = (row.pos as usize, row.pos as usize + 1);
            let start = r - pos;
            put_column(kt, k, r, pos, e, t);
            put_column(vt, v, r, pos, e, t);
            let att = &att[r * heads * t..][..heads * t];
            let (qr, dyr) = (&q[r * e..][..e], &dy[r * e..][..e]);
            // Through the weighted sum: datt[h, s] = dy_h · v_s,h and dv_s += att[h, s]·dy_h.
            head_dots(datt, dyr, vt, t, n, |s| s);
            for s in 0..n {
                let dvs = &mut dv[(start + s) * e..][..e];
                for (c, dv) in dvs.chunks_exact_mut(LANES).enumerate() {
                    let a = spread(att, t, 4 * c, s);
                    store(dv, a.mul_add(load(&dyr[c * LANES..]), load(dv)));
                }
            }
            // Through the softmax: ds = att·(datt - ⟨att, datt⟩)·scale, into datt.
            for (a, ds) in att.chunks_exact(t).zip(datt.chunks_exact_mut(t)) {
                let mean = f32x16::splat(Simd::dot(&a[..n], &ds[..n]));
                for j in (0..n).step_by(LANES) {
                    let g = load(&a[j..]) * (load(&ds[j..]) - mean) * scale;
                    store(&mut ds[j..], g);
                }
            }
            // Through the scores: dq += ds[h, s]·k_s,h and dk_s += ds[h, s]·q_h.
            for (c, dq) in dq[r * e..][..e].chunks_exact_mut(LANES).enumerate() {
                let (qc, mut acc) = (load(&qr[c * LANES..]), load(dq));
                for s in 0..n {
                    let ds = spread(datt, t, 4 * c, s);
                    let at = (start + s) * e + c * LANES;
                    acc = ds.mul_add(load(&k[at..]), acc);
                    let dks = ds.mul_add(qc, load(&dk[at..]));
                    store(&mut dk[at..], dks);
                }
                store(dq, acc);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::tests::{bits, random};
    use microgpt_core::{Config, Micro, PyRandom};

    /// Rows for names of these lengths, positions from 0 in each.
    fn rows_of(lengths: &[usize]) -> Vec<Row> {
        lengths
            .iter()
            .flat_map(|&n| {
                (0..n).map(|p| Row {
                    token: 0,
                    target: 0,
                    pos: p as u8,
                })
            })
            .collect()
    }

    /// Forward and backward across heads give the general path's bits on [`Simd`],
    /// for microgpt's shape, a wider one with more heads, and a longer context, over
    /// names of every length up to the context.
    #[test]
    fn across_heads_is_the_general_attention_to_the_bit() {
        let mut rng = PyRandom::new(7);
        for (embd, block, lengths) in [
            (16, 16, vec![1, 7, 16, 3, 12, 8, 9]),
            (32, 16, vec![5, 16, 1, 9]),
            (16, 64, vec![40, 64, 2, 17]),
        ] {
            let d = Dims {
                embd,
                heads: embd / 4,
                block,
                ..Micro::DIMS
            };
            assert!(serves(&d));
            let rows = rows_of(&lengths);
            let (r, e, h, t) = (rows.len(), embd, d.heads, block);
            let [q, k, mut v, mut dy] = [(); 4].map(|()| random(&mut rng, r * e));
            // Head 0's values positive, and its output gradient -0 on every third row:
            // sums of signed zeros (all -0), whose signs the paths must also agree on.
            for (i, (v, dy)) in v
                .chunks_exact_mut(e)
                .zip(dy.chunks_exact_mut(e))
                .enumerate()
            {
                v[..4].iter_mut().for_each(|v| *v = v.abs());
                if i % 3 == 1 {
                    dy[..4].fill(-0.0);
                }
            }

            let (mut y1, mut y2) = (vec![0.0; r * e], vec![1.0; r * e]);
            let (mut att1, mut att2) = (vec![0.0; r * h * t], vec![0.0; r * h * t]);
            // Values left in the buffer by earlier calls never reach an output: poisoned
            // with NaN, which any product it entered would carry.
            let poison = || with_transposed(2 * e * t, |b| b.fill(f32::NAN));
            ops::attention_forward::<f32, Simd>(&mut y1, &mut att1, &q, &k, &v, &rows, &d);
            poison();
            forward(&mut y2, &mut att2, &q, &k, &v, &rows, &d);
            assert_eq!(bits(&y1), bits(&y2), "y, {d:?}");

            // dq, dk and dv of each path, from -0, where a term of +0 would show; datt is
            // scratch.
            let [mut general, mut across] = [(); 2].map(|()| [(); 3].map(|()| vec![-0.0; r * e]));
            let mut datt = vec![0.0; h * t];
            let [dq, dk, dv] = &mut general;
            ops::attention_backward::<f32, Simd>(
                dq, dk, dv, &mut datt, &dy, &att1, &q, &k, &v, &rows, &d,
            );
            let [dq, dk, dv] = &mut across;
            poison();
            backward(dq, dk, dv, &mut datt, &dy, &att1, &q, &k, &v, &rows, &d);
            for (g, a) in general.iter().zip(&across) {
                assert_eq!(bits(g), bits(a), "dq, dk, dv, {d:?}");
            }
        }
    }
}
