//! Links with cortex-m-rt and defmt, and embeds the weights, seed and name count.
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

    fs::copy(manifest.join("memory.x"), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rustc-link-arg=--nmagic");
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rustc-link-arg=-Tdefmt.x");

    // MICROGPT_WEIGHTS: a weight file, relative to this folder; the shipped one by default.
    println!("cargo:rerun-if-env-changed=MICROGPT_WEIGHTS");
    let weights = env::var_os("MICROGPT_WEIGHTS")
        .map_or_else(|| manifest.join("../data/micro.bin"), |p| manifest.join(p));
    let weights = weights
        .canonicalize()
        .unwrap_or_else(|e| panic!("cannot read the weights {}: {e}", weights.display()));
    println!("cargo:rerun-if-changed={}", weights.display());
    let number = |name: &str, default: &str| {
        println!("cargo:rerun-if-env-changed={name}");
        let v = env::var(name).unwrap_or_else(|_| default.to_owned());
        v.parse::<i64>()
            .unwrap_or_else(|_| panic!("{name} must be an integer, not {v:?}"));
        v
    };
    let seed = number("MICROGPT_SEED", "42");
    let count = number("MICROGPT_COUNT", "20");
    let config = format!(
        "/// The weight file, 4-byte aligned so that it is read in place.\n\
         static WEIGHTS: &Aligned<[u8]> = &Aligned(*include_bytes!({weights:?}));\n\
         /// Python's random.seed for sampling.\n\
         const SEED: i64 = {seed};\n\
         /// Names to generate.\n\
         const COUNT: usize = {count};\n"
    );
    fs::write(out.join("build_config.rs"), config).unwrap();
}
