//! Picks the board, links with its runtime (cortex-m-rt or riscv-rt) and defmt, and
//! embeds the weights (checked), the seed and the name count, with the config and the
//! encoding of the weights: the only ones the program then compiles in.
//!
//! The linker scripts are passed here rather than as rustflags in `.cargo/config.toml`:
//! cargo ignores that file when started from another folder, and the build would then
//! "succeed" with an empty ELF.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());

    // The board: the one folder of boards/ whose cargo feature is on. Its memory map
    // goes to the linker, its board.rs into the program.
    let boards: Vec<String> = fs::read_dir(manifest.join("boards"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|b| manifest.join("boards").join(b).join("board.rs").exists())
                .collect()
        })
        .unwrap_or_default();
    let feature = |b: &str| format!("CARGO_FEATURE_{}", b.to_uppercase().replace('-', "_"));
    let chosen: Vec<&String> = boards
        .iter()
        .filter(|b| env::var_os(feature(b)).is_some())
        .collect();
    let [board] = chosen[..] else {
        fail(&format!(
            "choose one board, with its feature (--no-default-features --features BOARD, or ./board.sh BOARD): one of {}",
            boards.join(", ")
        ))
    };
    let dir = manifest.join("boards").join(board);
    println!("cargo:rerun-if-changed={}", dir.display());
    fs::copy(dir.join("memory.x"), out.join("memory.x"))
        .unwrap_or_else(|e| fail(&format!("boards/{board}/memory.x: {e}")));
    println!(
        "cargo:rustc-env=MICROGPT_BOARD_RS={}",
        dir.join("board.rs").display()
    );
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=--nmagic");
    // cortex-m-rt's link.x includes memory.x itself; riscv-rt's needs it given first.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("riscv32") {
        println!("cargo:rustc-link-arg=-Tmemory.x");
    }
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-link-arg=-Tdefmt.x");

    // MICROGPT_WEIGHTS: a weight file, relative to this folder; the shipped one by default.
    // It is checked here with the core's reader, so that a wrong path or a bad file
    // stops the build with one line that says what to do. MICROGPT_UNCHECKED_WEIGHTS=1
    // embeds it as it is, to test the check the firmware makes at boot.
    println!("cargo:rerun-if-env-changed=MICROGPT_WEIGHTS");
    println!("cargo:rerun-if-env-changed=MICROGPT_UNCHECKED_WEIGHTS");
    let given = env::var_os("MICROGPT_WEIGHTS");
    let weights = given
        .as_ref()
        .map_or_else(|| manifest.join("../data/micro.bin"), |p| manifest.join(p));
    let bytes = fs::read(&weights).unwrap_or_else(|e| {
        fail(&format!(
            "MICROGPT_WEIGHTS: cannot read the weights {} ({e}); give the path of a file written by `microgpt train --out`, relative to firmware/",
            weights.display()
        ))
    });
    let parsed = microgpt_core::WeightFile::parse(&bytes);
    if let (None, Err(e)) = (env::var_os("MICROGPT_UNCHECKED_WEIGHTS"), &parsed) {
        fail(&format!(
            "MICROGPT_WEIGHTS: {} is not a usable weight file: {e}; give one written by `microgpt train --out`",
            weights.display()
        ));
    }
    // The firmware holds the code of one config and one encoding, those of its weights:
    // each other config would cost flash (all nine, in both encodings, do not fit a
    // micro:bit). Weights of no shipped shape, or unchecked ones, get microgpt's, and
    // the firmware refuses them at boot.
    let (config, encoding) = parsed
        .ok()
        .and_then(|f| Some((microgpt_core::find(&f.dims())?.config, f.encoding())))
        .unwrap_or(("Micro", microgpt_core::weights_format::Encoding::F32));
    let weights = weights.canonicalize().unwrap_or(weights);
    println!("cargo:rerun-if-changed={}", weights.display());
    let number = |name: &str, default: &str| {
        println!("cargo:rerun-if-env-changed={name}");
        let v = env::var(name).unwrap_or_else(|_| default.to_owned());
        if v.parse::<i64>().is_err() {
            fail(&format!("{name} must be an integer, not {v:?}"));
        }
        v
    };
    let seed = number("MICROGPT_SEED", "42");
    let count = number("MICROGPT_COUNT", "20");
    let config = format!(
        "/// The weight file, 4-byte aligned so that it is read in place.\n\
         #[cfg_attr(feature = \"train\", allow(dead_code))]\n\
         static WEIGHTS: &Aligned<[u8]> = &Aligned(*include_bytes!({weights:?}));\n\
         /// Python's random.seed for sampling.\n\
         const SEED: i64 = {seed};\n\
         /// Names to generate.\n\
         const COUNT: usize = {count};\n\
         /// The config of the weights, the one this build holds.\n\
         type Flashed = microgpt_core::registry::{config};\n\
         /// The encoding of the weights, the one this build reads.\n\
         const ENCODING: microgpt_core::weights_format::Encoding =\n    \
             microgpt_core::weights_format::Encoding::{encoding:?};\n"
    );
    let mut config = config;
    if env::var_os("CARGO_FEATURE_TRAIN").is_some() {
        config += &training_data(&manifest, &out, seed.parse().unwrap_or(42));
    }
    fs::write(out.join("build_config.rs"), config).unwrap();
}

/// For the training program: the word list (MICROGPT_TRAIN_DATA, the project's names by
/// default) shuffled and split as `microgpt train` does it, with the host's own code, its
/// training part in that order, and the initial weights drawn from the generator after
/// the shuffle, as a weight file. The chip then trains from exactly where the host
/// starts. MICROGPT_TRAIN_STEPS sets the schedule's length (microgpt's 1000).
fn training_data(manifest: &std::path::Path, out: &std::path::Path, seed: i64) -> String {
    println!("cargo:rerun-if-env-changed=MICROGPT_TRAIN_DATA");
    println!("cargo:rerun-if-env-changed=MICROGPT_TRAIN_STEPS");
    let path = env::var_os("MICROGPT_TRAIN_DATA")
        .map_or_else(|| manifest.join("../data/names.txt"), |p| manifest.join(p));
    println!("cargo:rerun-if-changed={}", path.display());
    let data = microgpt::dataset::Dataset::load(&path)
        .unwrap_or_else(|e| fail(&format!("MICROGPT_TRAIN_DATA: {e:#}")));
    let (train, _, mut rng) = microgpt::dataset::split(&data.docs, seed);
    let mut init: Box<microgpt_core::Params<microgpt_core::Micro>> =
        Box::new(bytemuck::Zeroable::zeroed());
    let written = init
        .init(data.vocab.len(), &mut rng)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let w = init.weights();
            let mut bytes = vec![
                0u8;
                microgpt_core::weights_format::encoded_len(
                    &w.dims(),
                    microgpt_core::weights_format::Encoding::F32
                )
            ];
            microgpt_core::weights_format::write(&mut bytes, &data.vocab, &w)
                .map(|_| bytes)
                .map_err(|e| e.to_string())
        });
    let bytes = written.unwrap_or_else(|e| {
        fail(&format!(
            "MICROGPT_TRAIN_DATA: {} does not fit microgpt's model: {e}",
            path.display()
        ))
    });
    let (init_path, docs_path) = (out.join("train_init.bin"), out.join("train_docs.txt"));
    fs::write(&init_path, bytes).unwrap();
    fs::write(&docs_path, train.join("\n")).unwrap();
    let steps = env::var("MICROGPT_TRAIN_STEPS").unwrap_or_else(|_| "1000".to_owned());
    if steps.parse::<usize>().map_or(true, |n| n == 0) {
        fail(&format!(
            "MICROGPT_TRAIN_STEPS must be a positive integer, not {steps:?}"
        ));
    }
    format!(
        "/// The initial weights of the training program, as `microgpt train` draws them.\n\
         static TRAIN_INIT: &Aligned<[u8]> = &Aligned(*include_bytes!({init_path:?}));\n\
         /// The training names, one per line, in the order `microgpt train` takes them.\n\
         static TRAIN_DOCS: &[u8] = include_bytes!({docs_path:?});\n\
         /// Steps of the schedule.\n\
         const TRAIN_STEPS: usize = {steps};\n"
    )
}

/// Stops the build with one line: cargo shows it as `error: ...` and fails the build.
/// The script itself ends normally, or cargo would dump all its output around it.
fn fail(message: &str) -> ! {
    println!("cargo::error={message}");
    std::process::exit(0)
}
