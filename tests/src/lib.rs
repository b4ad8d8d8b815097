//! Helpers for the integration tests: the real `microgpt` binary, built once, and the
//! paths of the repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod tools;
pub use tools::{missing_firmware_tools, missing_web_tools};

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
    available(
        missing_firmware_tools(),
        "the QEMU firmware tests",
        "MICROGPT_REQUIRE_QEMU",
    )
}

/// Whether the page's test in headless Chromium can run; as [`qemu_available`], with
/// `MICROGPT_REQUIRE_WEB`.
pub fn web_available() -> bool {
    available(
        missing_web_tools(root()),
        "the page's test in headless Chromium",
        "MICROGPT_REQUIRE_WEB",
    )
}

fn available(missing: Vec<&str>, what: &str, required: &str) -> bool {
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{what} did not run: {} not found; run tests/run-all.sh, which installs them",
        missing.join(" and ")
    );
    assert!(std::env::var_os(required).is_none(), "{msg}");
    eprintln!("warning: {msg}");
    false
}

/// The boards of `firmware/boards/` that QEMU runs: Cortex-M4F, Cortex-M0 and RISC-V.
pub const QEMU_BOARDS: [&str; 3] = ["mps2-an386", "microbit", "riscv-virt"];

/// A firmware to build: the board (a folder of `firmware/boards/`) and the weights.
pub struct Firmware<'a> {
    /// The board.
    pub board: &'a str,
    /// The weight file to embed; the shipped micro weights when `None`.
    pub weights: Option<PathBuf>,
    /// Embed the weights as they are, unchecked by the build, to test the check the
    /// firmware makes at boot.
    pub unchecked: bool,
    /// Build the training program instead, for this many steps.
    pub train_steps: Option<usize>,
}

impl<'a> Firmware<'a> {
    /// `board` with the shipped weights.
    pub fn new(board: &'a str) -> Self {
        Firmware {
            board,
            weights: None,
            unchecked: false,
            train_steps: None,
        }
    }

    /// The same with another weight file.
    pub fn weights(self, weights: &Path) -> Self {
        Firmware {
            weights: Some(weights.to_owned()),
            ..self
        }
    }
}

/// Runs `firmware/board.sh BOARD build` and returns its output and the ELF's path.
/// Builds are serialized: a board's builds share its target directory.
pub fn try_build_firmware(fw: &Firmware<'_>) -> (Output, PathBuf) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let firmware = root().join("firmware");
    let mut cmd = Command::new(firmware.join("board.sh"));
    cmd.args([fw.board, "build", "--quiet"])
        .current_dir(&firmware)
        .env_remove("MICROGPT_WEIGHTS")
        .env_remove("MICROGPT_UNCHECKED_WEIGHTS");
    if let Some(w) = &fw.weights {
        cmd.env("MICROGPT_WEIGHTS", w);
    }
    if fw.unchecked {
        cmd.env("MICROGPT_UNCHECKED_WEIGHTS", "1");
    }
    if let Some(steps) = fw.train_steps {
        cmd.args(["--features", "train"])
            .env("MICROGPT_TRAIN_STEPS", steps.to_string());
    }
    let out = cmd.output().expect("firmware/board.sh runs");
    let elf = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| firmware.join(l.trim()))
        .unwrap_or_default();
    (out, elf)
}

/// Builds the firmware and returns a copy of its ELF in `dir`.
pub fn build_firmware(fw: &Firmware<'_>, dir: &Path) -> PathBuf {
    let (out, elf) = try_build_firmware(fw);
    assert!(
        out.status.success(),
        "building the firmware for {} failed: {}",
        fw.board,
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.join(format!("microgpt-firmware-{}.elf", fw.board));
    std::fs::copy(elf, &copy).unwrap();
    copy
}

/// Runs a firmware ELF of a QEMU board with the runner its `board.env` gives cargo
/// (QEMU piped into defmt-print).
pub fn run_in_qemu(board: &str, elf: &Path) -> Output {
    let firmware = root().join("firmware");
    let env = std::fs::read_to_string(firmware.join("boards").join(board).join("board.env"))
        .expect("the board has a board.env");
    let runner = env
        .lines()
        .find_map(|l| l.strip_prefix("RUNNER="))
        .map(|r| r.trim_matches('"').to_owned())
        .expect("board.env names its RUNNER");
    let mut words = runner.split_whitespace();
    Command::new(firmware.join(words.next().expect("a runner")))
        .args(words)
        .arg(elf)
        .current_dir(&firmware)
        .output()
        .expect("the runner starts")
}

/// The shipped names, `data/names.txt`.
fn shipped_names() -> Vec<String> {
    std::fs::read_to_string(root().join("data/names.txt"))
        .expect("data/names.txt is in the repository")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A list of names as people write them: capitalised, some with accents, some
/// double-barrelled with a hyphen, some with an apostrophe (`O'Neil`, `D'Arcy`), none
/// longer than microgpt's context. It is
/// made from the shipped names by fixed rules, so it is the same on every run.
pub fn mixed_case_names(count: usize) -> String {
    let names = shipped_names();
    let accents = [
        ('e', 'é'),
        ('a', 'á'),
        ('o', 'ö'),
        ('u', 'ü'),
        ('i', 'ï'),
        ('c', 'ç'),
        ('n', 'ñ'),
    ];
    let capital = |n: &str| {
        let mut c = n.chars();
        c.next()
            .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
    };
    (0..count)
        .map(|i| {
            let name = &names[(i * 7919) % names.len()];
            let other = &names[(i * 31 + 1) % names.len()];
            let mut out = match i % 9 {
                // Within microgpt's context of 15 characters.
                0 if name.len() + other.len() < 15 => {
                    format!("{}-{}", capital(name), capital(other))
                }
                3 => format!("O'{}", capital(name)),
                6 => format!("D'{}", capital(name)),
                _ => capital(name),
            };
            if i % 4 == 1 {
                let (plain, accented) = accents[i % accents.len()];
                out = out.replacen(plain, &accented.to_string(), 1);
            }
            out + "\n"
        })
        .collect()
}

/// Lines of 20 to 60 characters: shipped names joined by spaces and commas into short
/// lists, as a stand-in for short lines of text.
pub fn text_lines(count: usize) -> String {
    let names = shipped_names();
    let mut next = 0usize;
    let mut take = || {
        next += 1;
        names[(next * 104_729) % names.len()].as_str()
    };
    (0..count)
        .map(|i| {
            let target = 20 + (i * 37) % 41;
            let mut line = String::from(take());
            while line.len() < target {
                line.push_str(if line.len() % 3 == 0 { ", " } else { " and " });
                line.push_str(take());
            }
            line.truncate(60);
            line.trim_end_matches([' ', ',']).to_owned() + "\n"
        })
        .filter(|l| l.trim().len() >= 20)
        .collect()
}

/// Chinese names: a family name of one character and a given name of one or two, from
/// common characters, picked by a fixed rule.
pub fn cjk_names(count: usize) -> String {
    let family: Vec<char> = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗".chars().collect();
    let given: Vec<char> = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰春梅"
        .chars()
        .collect();
    (0..count)
        .map(|i| {
            let mut name = String::new();
            name.push(family[(i * 7) % family.len()]);
            name.push(given[(i * 13 + i / 7) % given.len()]);
            if i % 3 != 0 {
                name.push(given[(i * 17 + 5) % given.len()]);
            }
            name + "\n"
        })
        .collect()
}

/// A valid weight file of a shape that no shipped config has (8 wide, 2 heads): the
/// CLI and the firmware must refuse it by name.
pub fn odd_weights() -> Vec<u8> {
    microgpt_core::config! {
        Odd: name "odd", vocab 27, embd 8, heads 2, layers 1, block 8, mlp 16, batch 1
    }
    let vocab = microgpt_core::Vocab::from_chars('a'..='z').unwrap();
    let p = microgpt_core::Params::<Odd>::new(27).unwrap();
    let mut out = vec![
        0u8;
        microgpt_core::weights_format::encoded_len(
            &p.weights().dims(),
            microgpt_core::weights_format::Encoding::F32
        )
    ];
    microgpt_core::weights_format::write(&mut out, &vocab, &p.weights()).unwrap();
    out
}
