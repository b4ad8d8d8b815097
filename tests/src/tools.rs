//! The host tools that some tests need; shared by the build script, which warns when
//! they are missing, and the tests, which then stop (or fail, if told to).

use std::path::Path;

fn found(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The tools among QEMU (Arm and RISC-V) and defmt-print that are not on the `PATH`.
pub fn missing_firmware_tools() -> Vec<&'static str> {
    ["qemu-system-arm", "qemu-system-riscv32", "defmt-print"]
        .into_iter()
        .filter(|t| !found(t))
        .collect()
}

/// What the page's test in headless Chromium lacks: Debian's chromium, node, and
/// playwright-core installed in `host/web` (by `npm ci` there).
pub fn missing_web_tools(root: &Path) -> Vec<&'static str> {
    let mut missing: Vec<&str> = ["chromium", "node"]
        .into_iter()
        .filter(|t| !found(t))
        .collect();
    if !root.join("host/web/node_modules/playwright-core").exists() {
        missing.push("playwright-core (npm ci in host/web)");
    }
    missing
}
