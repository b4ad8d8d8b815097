//! int8 weights: the file round-trips and refuses damage with typed errors, the
//! quantisation error is bounded by the scales, and the decoder on the bytes computes
//! the very bits of the `f32` decoder on the dequantised weights.

mod common;

use common::*;
use microgpt_core::int8::{Int8Matrix, QMAX, quantize_row};
use microgpt_core::weights_format::{Encoding, MAGIC_INT8, encoded_len, write_int8};
use microgpt_core::{
    Config, Decoder, Error, Layout, Micro, Params, PyRandom, Sampling, Scalar, Vocab, WeightFile,
    generate,
};

microgpt_core::config! {
    Tiny: name "tiny", vocab 12, embd 8, heads 2, layers 2, block 6, mlp 12, batch 4
}

microgpt_core::config! {
    /// Odd sizes, so that the int8 values need padding to the checksum's alignment.
    Odd: name "odd", vocab 12, embd 6, heads 2, layers 1, block 5, mlp 9, batch 4
}

/// Trained-looking weights (microgpt's init, with some large entries) for `vocab`.
fn params<C: Config>(vocab: &Vocab) -> Box<Params<C>> {
    let mut p: Box<Params<C>> = bytemuck::zeroed_box();
    p.init(vocab.len(), &mut PyRandom::new(8)).unwrap();
    for (i, w) in p.as_mut_slice().iter_mut().enumerate().step_by(97) {
        *w = if i % 2 == 0 { 1.5 } else { -0.7 };
    }
    p
}

/// The int8 file of `p`, in a 4-byte aligned buffer.
fn int8_file<C: Config>(p: &Params<C>, vocab: &Vocab) -> Vec<u32> {
    let len = encoded_len(&p.weights().dims(), Encoding::Int8);
    let mut words = vec![0u32; len / 4];
    let written = write_int8(bytemuck::cast_slice_mut(&mut words), vocab, &p.weights());
    assert_eq!(written, Ok(len));
    words
}

#[test]
fn a_row_is_within_half_a_step_of_its_quantised_values() {
    let row = [0.3f32, -1.27, 0.0, 1e-9, 0.635];
    let mut q = [0i8; 5];
    let s = quantize_row(&row, &mut q);
    assert_eq!(s, 1.27 / QMAX);
    assert_eq!(q, [30, -127, 0, 0, 64]);
    for (&w, &q) in row.iter().zip(&q) {
        assert!((w - f32::from(q) * s).abs() <= s / 2.0 * 1.0001, "{w} {q}");
    }
    let mut q = [9i8; 3];
    assert_eq!(quantize_row(&[0.0; 3], &mut q), 0.0);
    assert_eq!(q, [0; 3]);
}

#[test]
fn round_trip_is_in_place_and_a_quarter_of_the_size() {
    let vocab = vocab_of(&NAMES);
    let p = params::<Micro>(&vocab);
    let words = int8_file(&p, &vocab);
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    assert_eq!(&bytes[..8], &MAGIC_INT8);
    let f = WeightFile::parse(bytes).unwrap();
    assert_eq!(f.encoding(), Encoding::Int8);
    assert_eq!((f.vocab(), f.byte_len()), (&vocab, bytes.len()));
    let f32_len = encoded_len(&f.dims(), Encoding::F32);
    assert!(bytes.len() * 3 < f32_len, "{} of {f32_len}", bytes.len());

    let w = f.int8_weights::<Micro>().unwrap();
    assert!(
        bytes
            .as_ptr_range()
            .contains(&(w.scales().as_ptr() as *const u8))
    );
    assert_eq!(
        f.weights::<Micro>()
            .err()
            .map(|e| matches!(e, Error::Usage(_))),
        Some(true)
    );

    // Dequantised, every weight is within half a step of its row's scale.
    let mut deq = vec![0.0; p.as_slice().len()];
    f.copy_params::<Micro>(&mut deq).unwrap();
    let layout = Layout::new(f.dims());
    for (t, range, [rows, cols]) in layout.tensors() {
        let scales = &w.scales()[layout.first_row(t)..][..rows];
        let rows = p.as_slice()[range.clone()]
            .chunks_exact(cols)
            .zip(deq[range].chunks_exact(cols));
        for (r, ((want, got), &s)) in rows.zip(scales).enumerate() {
            for (w, d) in want.iter().zip(got) {
                let err = (w - d).abs();
                assert!(
                    err <= s / 2.0 * 1.0001,
                    "{t} row {r}: {err} for a step of {s}"
                );
            }
        }
    }
    // Quantising the dequantised weights gives the same file.
    let mut again = Params::<Micro>::new(vocab.len()).unwrap();
    again.copy_from(vocab.len(), &deq).unwrap();
    assert_eq!(int8_file(&again, &vocab), words);

    // From an unaligned copy, only the in-place view is refused.
    let shifted: Vec<u8> = std::iter::once(0).chain(bytes.iter().copied()).collect();
    let f = WeightFile::parse(&shifted[1..]).unwrap();
    assert_eq!(f.int8_weights::<Micro>().err(), Some(Error::Misaligned));
    let mut copy = vec![0.0; deq.len()];
    f.copy_params::<Micro>(&mut copy).unwrap();
    assert_eq!(copy, deq);
}

/// The decoder reading int8 bytes computes, logit for logit and name for name, what
/// it computes on the dequantised `f32` weights: what the host runs is what the chip
/// runs.
fn int8_decoder_equals_f32_decoder<C: Config>(names: &[&str]) {
    let vocab = vocab_of(names);
    let p = params::<C>(&vocab);
    let words = int8_file(&p, &vocab);
    let f = WeightFile::parse(bytemuck::cast_slice(&words)).unwrap();
    let int8 = f.int8_weights::<C>().unwrap();
    let mut deq = Params::<C>::new(vocab.len()).unwrap();
    f.copy_params::<C>(deq.as_mut_slice()).unwrap();
    let deq = deq.weights();

    let (mut a, mut b) = (Decoder::<C>::new(), Decoder::<C>::new());
    for (pos, c) in names[0].chars().take(C::DIMS.block).enumerate() {
        let token = vocab.encode(c).unwrap();
        let x = a.step::<Scalar>(&int8, token).unwrap().to_vec();
        let y = b.step::<Scalar>(&deq, token).unwrap();
        assert_eq!(x, y, "{}: position {pos}", C::NAME);
    }
    let sampling = Sampling::new(0.8);
    let name = |dec: &mut Decoder<C>, w: &dyn Fn(&mut Decoder<C>, &mut PyRandom) -> String| {
        let mut rng = PyRandom::new(4);
        (0..20).map(|_| w(dec, &mut rng)).collect::<Vec<_>>()
    };
    let on_int8 = name(&mut a, &|dec, rng| {
        let mut s = String::new();
        generate::<C, f32, Scalar, _, _>(dec, &int8, &vocab, rng, &sampling, "", &mut s).unwrap();
        s
    });
    let on_f32 = name(&mut b, &|dec, rng| {
        let mut s = String::new();
        generate::<C, f32, Scalar, _, _>(dec, &deq, &vocab, rng, &sampling, "", &mut s).unwrap();
        s
    });
    assert_eq!(on_int8, on_f32);
    assert!(on_int8.iter().any(|n| !n.is_empty()));
}

/// The int8 product that skips zero inputs is the dense one to the bit, for every share
/// of zeros, zeros of both signs among them.
#[test]
fn sparse_int8_product_is_the_dense_ones_bits() {
    let mut rng = PyRandom::new(6);
    let (rows, cols) = (5, 24);
    let w: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random() as f32 - 0.5)
        .collect();
    let mut q = vec![0i8; rows * cols];
    let scales: Vec<f32> = (w.chunks(cols).zip(q.chunks_mut(cols)))
        .map(|(w, q)| quantize_row(w, q))
        .collect();
    let m = Int8Matrix {
        q: &q,
        scales: &scales,
        cols,
    };
    for zeros in [0, 1, 7, 20, 23, 24] {
        let mut x: Vec<f32> = (0..cols).map(|_| rng.random() as f32 - 0.5).collect();
        x[..zeros]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if i % 2 == 1 { -0.0 } else { 0.0 });
        rng.shuffle(&mut x);
        let (mut dense, mut sparse) = ([0f32; 5], [0f32; 5]);
        m.matvec(&mut dense, &x);
        m.matvec_sparse(&mut sparse, &x);
        assert_eq!(
            dense.map(f32::to_bits),
            sparse.map(f32::to_bits),
            "{zeros} zeros"
        );
    }
}

#[test]
fn int8_decoder_computes_the_dequantised_models_bits() {
    int8_decoder_equals_f32_decoder::<Micro>(&NAMES);
    int8_decoder_equals_f32_decoder::<Tiny>(&["abc", "bad", "cab", "dace", "face"]);
}

/// A file whose body is changed by `edit` (at byte offsets from its start), with its
/// checksum repaired, so that the check after the checksum is the one that answers.
fn damaged(words: &[u32], edit: impl FnOnce(&mut [u8])) -> Result<(), Error> {
    let mut bytes: Vec<u8> = bytemuck::cast_slice(words).to_vec();
    edit(&mut bytes);
    let len = bytes.len();
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes[..len - 4]);
    bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
    WeightFile::parse(&bytes).map(|_| ())
}

#[test]
fn each_kind_of_damage_has_its_error() {
    let vocab = vocab_of(&["ab", "ba"]);
    let p = params::<Odd>(&vocab);
    let words = int8_file(&p, &vocab);
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    let scales = 40 + 4 * (vocab.len() - 1);
    let layout = Layout::new(Odd::DIMS.with_vocab(vocab.len()));
    let padding = scales + 4 * layout.rows() + layout.len();
    assert!(padding < bytes.len() - 4, "the int8 values need padding");

    let mut flipped = bytes.to_vec();
    flipped[padding - 1] ^= 1;
    assert!(matches!(
        WeightFile::parse(&flipped),
        Err(Error::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        WeightFile::parse(&bytes[..bytes.len() - 4]),
        Err(Error::Truncated { .. })
    ));
    let put =
        |at: usize, v: f32| move |b: &mut [u8]| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    assert_eq!(
        damaged(&words, put(scales + 4 * 3, f32::NAN)),
        Err(Error::NonFiniteWeight { index: 3 })
    );
    assert_eq!(
        damaged(&words, put(scales + 4 * 5, -0.5)),
        Err(Error::Corrupt("an int8 row scale is negative"))
    );
    assert_eq!(
        damaged(&words, put(scales + 4 * 2, f32::MAX / 100.0)),
        Err(Error::Corrupt(
            "an int8 row scale is so large that its weights are not finite"
        ))
    );
    assert_eq!(
        damaged(&words, |b| b[padding] = 7),
        Err(Error::Corrupt(
            "the padding after the int8 weights is not zero"
        ))
    );
    // The f32 magic on an int8 body: the length no longer matches the shape.
    assert_eq!(
        damaged(&words, |b| b[..8].copy_from_slice(b"MGPTWGT\0")),
        Err(Error::Corrupt(
            "the file length does not match the model dimensions"
        ))
    );
    // Any int8 value is a weight: changing one changes the model, not its validity.
    assert_eq!(damaged(&words, |b| b[padding - 1] = 0x80), Ok(()));
}

#[test]
fn the_writer_refuses_what_it_cannot_store() {
    let vocab = vocab_of(&NAMES);
    let mut p = params::<Micro>(&vocab);
    let len = encoded_len(&p.weights().dims(), Encoding::Int8);
    let mut out = vec![0u8; len];
    assert_eq!(
        write_int8(&mut out[..len - 1], &vocab, &p.weights()),
        Err(Error::BufferTooSmall {
            needed: len,
            found: len - 1
        })
    );
    assert!(matches!(
        write_int8(&mut out, &vocab_of(&["ab"]), &p.weights()),
        Err(Error::Usage(_))
    ));
    p.as_mut_slice()[7] = f32::MAX;
    assert!(matches!(
        write_int8(&mut out, &vocab, &p.weights()),
        Err(Error::Usage(_))
    ));
    p.as_mut_slice()[42] = f32::NAN;
    assert_eq!(
        write_int8(&mut out, &vocab, &p.weights()),
        Err(Error::NonFiniteWeight { index: 42 })
    );
}
