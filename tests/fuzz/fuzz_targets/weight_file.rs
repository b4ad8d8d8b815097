//! The weight-file reader, as the firmware (core) and the CLI (host) use it: any bytes
//! give a file or a typed error, never a panic, and a file that parses gives weights of
//! the config it names, `f32` or int8 (whose decoder computes what its dequantised
//! copy computes). The bytes are tried as they are, and with their checksum
//! repaired, so that mutations reach the checks behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use microgpt::model_file::WeightBytes;
use microgpt_core::weights_format::Encoding;
use microgpt_core::{Config, Decoder, Params, Scalar, WeightFile, with_config};

/// Every view the tools take of a checked file.
fn views<C: Config>(file: &WeightFile<'_>) {
    let n = file.dims().num_params();
    let mut copy = vec![0f32; n];
    file.copy_params::<C>(&mut copy)
        .expect("a held shape copies");
    assert!(copy.iter().all(|x| x.is_finite()));
    match file.encoding() {
        Encoding::F32 => {
            if let Ok(w) = file.weights::<C>() {
                assert_eq!(w.as_slice(), &copy[..]);
            }
        }
        Encoding::Int8 => {
            let Ok(int8) = file.int8_weights::<C>() else {
                return;
            };
            let mut params: Box<Params<C>> = bytemuck::zeroed_box();
            params.copy_from(file.vocab().len(), &copy).unwrap();
            let (mut a, mut b): (Box<Decoder<C>>, Box<Decoder<C>>) =
                (bytemuck::zeroed_box(), bytemuck::zeroed_box());
            let x = a.step::<Scalar>(&int8, 0).unwrap().to_vec();
            let y = b.step::<Scalar>(&params.weights(), 0).unwrap();
            assert!(x.iter().zip(y.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}

fn check(bytes: &[u8]) {
    if let Ok(file) = WeightFile::parse(bytes) {
        assert!(file.byte_len() <= bytes.len());
        let _ = with_config!(file.dims(), views(&file));
    }
    let host = WeightBytes::from_bytes(bytes, "fuzz.bin".into());
    if let Ok(file) = host.model() {
        assert_eq!(file.byte_len(), bytes.len());
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with the CRC-32 the stated length asks for.
    if data.len() >= 16 {
        let len = u32::from_le_bytes([data[12], data[13], data[14], data[15]]) as usize;
        if (8..=data.len()).contains(&len) {
            let mut fixed = data.to_vec();
            let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&fixed[..len - 4]);
            fixed[len - 4..len].copy_from_slice(&crc.to_le_bytes());
            check(&fixed);
        }
    }
});
