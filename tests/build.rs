//! Warns, in every plain `cargo test`, when the firmware or page tests cannot run here.

#[path = "src/tools.rs"]
mod tools;

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    let missing = tools::missing_firmware_tools();
    if !missing.is_empty() {
        println!(
            "cargo:warning=the firmware tests in QEMU will NOT run: {} not found. Run tests/run-all.sh, which installs them and runs every test.",
            missing.join(" and ")
        );
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let missing = tools::missing_web_tools(&root);
    if !missing.is_empty() {
        println!(
            "cargo:warning=the page's test in headless Chromium will NOT run: {} not found. Run tests/run-all.sh, which installs them and runs every test.",
            missing.join(" and ")
        );
    }
}
