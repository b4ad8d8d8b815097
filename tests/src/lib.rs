//! Helpers for the integration tests: the real `microgpt` binary, built once, and the
//! paths of the repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod firmware_tools;
pub use firmware_tools::missing_firmware_tools;

/// The repository's root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
}

/// The release build of the `microgpt` binary, built on first use.
pub fn microgpt_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "microgpt",
                "--bin",
                "microgpt",
            ])
            .current_dir(root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the microgpt binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root().join("target"), PathBuf::from);
        target.join("release").join("microgpt")
    })
}

/// Runs `microgpt` with `args` in `dir`.
pub fn microgpt(dir: &Path, args: &[&str]) -> Output {
    Command::new(microgpt_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

/// A file of the shared folder beside the repository (`../shared`), which CI provides.
/// Tests that need one fail, with this message, when it is missing: they never pass
/// without it.
pub fn shared(path: &str) -> PathBuf {
    let p = root().join("../shared").join(path);
    assert!(
        p.exists(),
        "this test needs {} from the shared folder beside the repository (../shared), and it is missing",
        p.display()
    );
    p
}

/// Whether the QEMU firmware tests can run: QEMU and defmt-print are installed. When
/// they are not, the tests say so and stop, unless `MICROGPT_REQUIRE_QEMU` is set (as
/// `tests/run-all.sh` sets it), in which case they fail.
pub fn qemu_available() -> bool {
    let missing = missing_firmware_tools();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "the QEMU firmware tests did not run: {} not found; run tests/run-all.sh, which installs qemu-system-arm and defmt-print",
        missing.join(" and ")
    );
    assert!(std::env::var_os("MICROGPT_REQUIRE_QEMU").is_none(), "{msg}");
    eprintln!("warning: {msg}");
    false
}

/// Which firmware to build.
pub enum Board {
    /// QEMU's mps2-an386, with the given weight file (the shipped one when `None`).
    Qemu(Option<PathBuf>),
    /// The nRF52840-DK.
    Nrf52840dk,
}

/// Builds the firmware and returns a copy of its ELF in `dir`. Builds are serialized:
/// they share one target directory.
pub fn build_firmware(board: Board, dir: &Path) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let firmware = root().join("firmware");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(&firmware).env_remove("MICROGPT_WEIGHTS");
    let elf = match &board {
        Board::Qemu(weights) => {
            cmd.args(["build", "--release", "--quiet"]);
            if let Some(w) = weights {
                cmd.env("MICROGPT_WEIGHTS", w);
            }
            "target/thumbv7em-none-eabihf/release/microgpt-firmware"
        }
        Board::Nrf52840dk => {
            cmd.args(["build-nrf", "--quiet"]);
            "target/nrf52840dk/thumbv7em-none-eabihf/release/microgpt-firmware"
        }
    };
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building the firmware failed");
    let copy = dir.join("microgpt-firmware.elf");
    std::fs::copy(firmware.join(elf), &copy).unwrap();
    copy
}

/// Runs a QEMU firmware ELF through the firmware's cargo runner (QEMU piped into
/// defmt-print).
pub fn run_in_qemu(elf: &Path) -> Output {
    Command::new(root().join("firmware/qemu-run.sh"))
        .arg(elf)
        .output()
        .expect("the runner starts")
}
