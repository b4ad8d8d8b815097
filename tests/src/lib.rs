//! Helpers for the integration tests: the real `microgpt` binary, built once, and the
//! paths of the repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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
