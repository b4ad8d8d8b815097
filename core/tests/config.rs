//! The compile-time sizes that the documentation states.

use microgpt_core::{Config, Makemore, Micro};

microgpt_core::config! {
    /// microgpt exactly: one name per step.
    MicroOne: name "micro1", vocab 27, embd 16, heads 4, layers 1, block 16, mlp 64, batch 1
}

#[test]
fn micro_sizes() {
    assert_eq!(Micro::NUM_PARAMS, 4_192);
    assert_eq!(Micro::PARAM_BYTES, 16_768);
    assert_eq!(Micro::DIMS.acts_per_row(), 371);
    assert_eq!(Micro::ACTS_BYTES, 760_064);
    assert_eq!(Micro::TRAIN_BYTES, 827_136);
    assert_eq!(Micro::DECODER_BYTES, 3_032);
    // One name per step, as microgpt.py, fits an nRF52840's 256 KB of RAM.
    assert_eq!(MicroOne::TRAIN_BYTES, 91_072);
}

#[test]
fn makemore_sizes() {
    assert_eq!(Makemore::NUM_PARAMS, 201_088);
    assert_eq!(Makemore::PARAM_BYTES, 804_352);
    assert_eq!(Makemore::ACTS_BYTES, 6_965_504);
    assert_eq!(Makemore::TRAIN_BYTES, 10_182_912);
    assert_eq!(Makemore::DECODER_BYTES, 35_288);
}

#[test]
fn buffers_have_the_stated_sizes() {
    use microgpt_core::{Acts, Decoder, Params};
    assert_eq!(
        size_of::<<Micro as Config>::Params<f32>>(),
        Micro::PARAM_BYTES
    );
    assert_eq!(
        size_of::<<Makemore as Config>::Acts<f32>>(),
        Makemore::ACTS_BYTES
    );
    assert!(size_of::<Params<Micro>>() - Micro::PARAM_BYTES <= 8);
    assert!(size_of::<Acts<Micro>>() - Micro::ACTS_BYTES <= 32);
    assert!(size_of::<Decoder<Makemore>>() - Makemore::DECODER_BYTES <= 16);
}

/// The table of `core/src/lib.rs`, row by row: parameters with 27 tokens, parameters at
/// capacity, the training working set and the inference state.
#[test]
fn every_shipped_config_has_the_documented_sizes() {
    use microgpt_core::*;
    fn row<C: Config>() -> [usize; 4] {
        [
            C::DIMS.with_vocab(27).num_params(),
            C::NUM_PARAMS,
            C::TRAIN_BYTES,
            C::DECODER_BYTES,
        ]
    }
    let table = [
        (Micro::DIMS, [4_192, 4_192, 827_136, 3_032]),
        (Micro256::DIMS, [4_192, 11_520, 1_239_296, 4_864]),
        (Mini::DIMS, [26_816, 26_816, 2_602_240, 9_688]),
        (Mini256::DIMS, [26_816, 41_472, 2_902_272, 11_520]),
        (Lines::DIMS, [28_352, 28_352, 12_292_096, 35_032]),
        (Lines256::DIMS, [28_352, 43_008, 12_788_736, 36_864]),
        (Makemore::DIMS, [201_088, 201_088, 10_182_912, 35_288]),
        (Makemore256::DIMS, [201_088, 230_400, 10_651_904, 37_120]),
        (Large::DIMS, [559_680, 559_680, 21_232_896, 64_984]),
    ];
    assert_eq!(SHIPPED.len(), table.len());
    for (shipped, (dims, want)) in SHIPPED.iter().zip(table) {
        assert_eq!(shipped.dims, dims);
        assert_eq!(with_config!(dims, row()), Some(want), "{shipped:?}");
    }
}
