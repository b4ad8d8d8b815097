//! The weight file: round trip, and a typed error for each kind of damage.

mod common;

use common::*;
use microgpt_core::weights_format::{Encoding, MAGIC, VERSION, encoded_len, write};
use microgpt_core::{Error, Makemore, Micro, Params, PyRandom, Vocab, WeightFile};

/// A written file in a 4-byte aligned buffer (as `include_bytes!` in an aligned wrapper
/// or a file read into `u32`s would give).
fn file<C: microgpt_core::Config>(vocab: &Vocab) -> Vec<u32> {
    let mut p: Box<Params<C>> = bytemuck::zeroed_box();
    p.init(vocab.len(), &mut PyRandom::new(3)).unwrap();
    let len = encoded_len(&p.weights().dims(), Encoding::F32);
    let mut words = vec![0u32; len / 4];
    assert_eq!(
        write(bytemuck::cast_slice_mut(&mut words), vocab, &p.weights()),
        Ok(len)
    );
    words
}

#[test]
fn round_trip_in_place() {
    let vocab = vocab_of(&NAMES);
    let words = file::<Micro>(&vocab);
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    assert_eq!(&bytes[..8], &MAGIC);
    let f = WeightFile::parse(bytes).unwrap();
    assert_eq!(f.vocab(), &vocab);
    let w = f.weights::<Micro>().unwrap();
    let mut want = Params::<Micro>::new(vocab.len()).unwrap();
    want.init(vocab.len(), &mut PyRandom::new(3)).unwrap();
    assert_eq!(w.as_slice(), want.as_slice());
    // In place: the parameters point into the file's bytes.
    assert!(
        bytes
            .as_ptr_range()
            .contains(&(w.as_slice().as_ptr() as *const u8))
    );

    // Trailing bytes (the rest of a flash region) are ignored.
    let mut padded = words.clone();
    padded.extend([0xffff_ffff; 8]);
    assert!(WeightFile::parse(bytemuck::cast_slice(&padded)).is_ok());

    // Unaligned: no in-place view, but a copy works.
    let shifted: Vec<u8> = std::iter::once(0).chain(bytes.iter().copied()).collect();
    let f = WeightFile::parse(&shifted[1..]).unwrap();
    assert_eq!(f.weights::<Micro>().err(), Some(Error::Misaligned));
    let mut copy = vec![0.0; want.as_slice().len()];
    f.copy_params::<Micro>(&mut copy).unwrap();
    assert_eq!(copy, want.as_slice());
}

#[test]
fn each_kind_of_damage_has_its_error() {
    let vocab = vocab_of(&NAMES);
    let words = file::<Micro>(&vocab);
    let good: &[u8] = bytemuck::cast_slice(&words);
    let len = good.len();
    let parse = |b: &[u8]| WeightFile::parse(b).map(|_| ());

    assert_eq!(
        parse(&good[..len - 1]),
        Err(Error::Truncated {
            needed: len,
            found: len - 1
        })
    );
    assert_eq!(
        parse(&good[..len / 2]),
        Err(Error::Truncated {
            needed: len,
            found: len / 2
        })
    );
    assert_eq!(
        parse(&good[..10]),
        Err(Error::Truncated {
            needed: 44,
            found: 10
        })
    );

    let mut flipped = good.to_vec();
    flipped[len / 2] ^= 0x10;
    assert!(matches!(
        parse(&flipped),
        Err(Error::ChecksumMismatch { .. })
    ));

    let mut magic = good.to_vec();
    magic[0] = b'X';
    assert_eq!(parse(&magic), Err(Error::BadMagic));

    let mut version = good.to_vec();
    version[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    assert_eq!(
        parse(&version),
        Err(Error::UnsupportedVersion {
            found: VERSION + 1,
            supported: VERSION
        })
    );

    let other = file::<Makemore>(&vocab);
    let f = WeightFile::parse(bytemuck::cast_slice(&other)).unwrap();
    assert!(matches!(
        f.weights::<Micro>(),
        Err(Error::ConfigMismatch { .. })
    ));
    assert!(matches!(
        f.copy_params::<Micro>(&mut [0.0; 4]),
        Err(Error::ConfigMismatch { .. })
    ));
    assert!(f.weights::<Makemore>().is_ok());
}

#[test]
fn writer_checks_its_inputs() {
    let vocab = vocab_of(&NAMES);
    let p = Params::<Micro>::new(vocab.len()).unwrap();
    let mut small = [0u8; 100];
    assert!(matches!(
        write(&mut small, &vocab, &p.weights()),
        Err(Error::BufferTooSmall { found: 100, .. })
    ));
    let other = Vocab::from_chars("ab".chars()).unwrap();
    let mut big = vec![0u8; 100_000];
    assert!(matches!(
        write(&mut big, &other, &p.weights()),
        Err(Error::Usage(_))
    ));
}

/// Whatever the bytes, parsing returns, and never panics.
#[test]
fn arbitrary_bytes_never_panic() {
    let vocab = vocab_of(&NAMES);
    let words = file::<Micro>(&vocab);
    let good: &[u8] = bytemuck::cast_slice(&words);
    let mut rng = PyRandom::new(99);
    let mut ok = 0;
    for round in 0..20_000 {
        let mut b = good.to_vec();
        for _ in 0..1 + round % 4 {
            let at = (rng.random() * b.len() as f64) as usize;
            b[at] = (rng.random() * 256.0) as u8;
        }
        b.truncate((rng.random() * (good.len() + 10) as f64) as usize);
        if let Ok(f) = WeightFile::parse(&b) {
            ok += 1;
            let _ = f.weights::<Micro>();
        }
        // Also junk that carries a valid magic and version and a wild length.
        let mut junk: Vec<u8> = (0..64).map(|_| (rng.random() * 256.0) as u8).collect();
        junk[..8].copy_from_slice(&MAGIC);
        junk[8..12].copy_from_slice(&VERSION.to_le_bytes());
        assert!(WeightFile::parse(&junk).is_err());
    }
    // Only the rounds that left the file whole (by chance) parse.
    assert!(ok < 2_000, "{ok} damaged files parsed");
}

/// A weight that is NaN or infinite, with a valid checksum, is refused by index: such a
/// file comes from a diverged run, not from damage.
#[test]
fn non_finite_weights_are_refused() {
    use microgpt_core::Config;
    let vocab = vocab_of(&NAMES);
    for (index, bad) in [
        (0, f32::NAN),
        (1234, f32::INFINITY),
        (4000, f32::NEG_INFINITY),
    ] {
        let mut p = Params::<Micro>::new(vocab.len()).unwrap();
        p.init(vocab.len(), &mut PyRandom::new(3)).unwrap();
        let n = Micro::DIMS.with_vocab(vocab.len()).num_params();
        let mut flat = p.as_slice().to_vec();
        flat[index.min(n - 1)] = bad;
        let w = microgpt_core::Weights::<Micro>::new(&flat, vocab.len()).unwrap();
        let mut words = vec![0u32; encoded_len(&w.dims(), Encoding::F32) / 4];
        write(bytemuck::cast_slice_mut(&mut words), &vocab, &w).unwrap();
        let parsed = WeightFile::parse(bytemuck::cast_slice(&words));
        assert_eq!(
            parsed.err(),
            Some(Error::NonFiniteWeight {
                index: index.min(n - 1)
            })
        );
    }
    let words = file::<Micro>(&vocab);
    let f = WeightFile::parse(bytemuck::cast_slice(&words)).unwrap();
    assert_eq!(f.byte_len(), words.len() * 4);
}
