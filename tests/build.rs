//! Warns, in every plain `cargo test`, when the firmware tests cannot run here.

#[path = "src/firmware_tools.rs"]
mod firmware_tools;

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    let missing = firmware_tools::missing_firmware_tools();
    if !missing.is_empty() {
        println!(
            "cargo:warning=the firmware tests in QEMU will NOT run: {} not found. Run tests/run-all.sh, which installs them and runs every test.",
            missing.join(" and ")
        );
    }
}
