//! Picks the board, links with its runtime (cortex-m-rt or riscv-rt) and defmt, and
//! embeds the weights (checked), the seed and the name count.
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
    if let (None, Err(e)) = (
        env::var_os("MICROGPT_UNCHECKED_WEIGHTS"),
        microgpt_core::WeightFile::parse(&bytes),
    ) {
        fail(&format!(
            "MICROGPT_WEIGHTS: {} is not a usable weight file: {e}; give one written by `microgpt train --out`",
            weights.display()
        ));
    }
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
         static WEIGHTS: &Aligned<[u8]> = &Aligned(*include_bytes!({weights:?}));\n\
         /// Python's random.seed for sampling.\n\
         const SEED: i64 = {seed};\n\
         /// Names to generate.\n\
         const COUNT: usize = {count};\n"
    );
    fs::write(out.join("build_config.rs"), config).unwrap();
}

/// Stops the build with one line: cargo shows it as `error: ...` and fails the build.
/// The script itself ends normally, or cargo would dump all its output around it.
fn fail(message: &str) -> ! {
    println!("cargo::error={message}");
    std::process::exit(0)
}
