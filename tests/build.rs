//! Warns, in every plain `cargo test`, when the firmware tests cannot run here.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    let found = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = ["qemu-system-arm", "defmt-print"]
        .into_iter()
        .filter(|t| !found(t))
        .collect();
    if !missing.is_empty() {
        println!(
            "cargo:warning=the firmware tests in QEMU will NOT run: {} not found. Run tests/run-all.sh, which installs them and runs every test.",
            missing.join(" and ")
        );
    }
}
