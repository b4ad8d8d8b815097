//! The host tools the firmware tests need; shared by the build script, which warns
//! when they are missing, and the tests, which then stop (or fail, if told to).

/// The tools among QEMU and defmt-print that are not on the `PATH`.
pub fn missing_firmware_tools() -> Vec<&'static str> {
    let found = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ["qemu-system-arm", "defmt-print"]
        .into_iter()
        .filter(|t| !found(t))
        .collect()
}
