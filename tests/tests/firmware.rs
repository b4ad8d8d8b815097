//! The real firmware ELF in real QEMU: the names of the chip are the names of the host.

use std::fs;
use std::path::Path;
use std::process::Command;

use microgpt_tests::{
    Board, build_firmware, microgpt, odd_weights, qemu_available, root, run_in_qemu, text_lines,
    try_build_firmware,
};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Builds the QEMU firmware with `weights` (the shipped micro weights when `None`), runs
/// it, and checks that its names are the host's for the same weights and seed.
fn firmware_names_equal_host_names(weights: Option<&Path>) {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let elf = build_firmware(Board::Qemu(weights.map(Path::to_owned)), dir.path());
    let started = std::time::Instant::now();
    let out = run_in_qemu(&elf);
    let log = text(&out.stdout);
    assert!(
        out.status.success(),
        "the firmware failed: {log}{}",
        text(&out.stderr)
    );
    eprintln!("QEMU run: {:.2} s", started.elapsed().as_secs_f64());

    let chip: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("name ")?.split_once(": ").map(|(_, n)| n))
        .collect();
    let micro = root().join("data/micro.bin");
    let file = weights.unwrap_or(&micro).to_str().unwrap();
    let host = microgpt(
        root(),
        &["sample", "--weights", file, "--seed", "42", "--count", "20"],
    );
    assert!(host.status.success());
    let host = text(&host.stdout);
    assert_eq!(
        chip,
        host.lines().collect::<Vec<_>>(),
        "firmware log:\n{log}"
    );
    let summary = log
        .lines()
        .find(|l| l.starts_with("generated 20 names"))
        .expect("a summary line");
    let per_token: u64 = summary
        .split(", ")
        .nth(2)
        .and_then(|s| s.split(' ').next()?.parse().ok())
        .expect("instructions per token");
    assert!(per_token > 1_000, "{summary}");
    eprintln!("{file}: {summary}");
}

#[test]
fn firmware_names_equal_host_names_micro() {
    firmware_names_equal_host_names(None);
}

/// The 201,088-parameter makemore model fits the chip too: 786 KB of weights in flash.
#[test]
fn firmware_names_equal_host_names_makemore() {
    firmware_names_equal_host_names(Some(&root().join("data/makemore.bin")));
}

/// A model of another shipped shape, with a larger vocabulary than microgpt's (29
/// tokens: a-z, space and comma) and a context of 64: the firmware picks its config from
/// the weights alone.
#[test]
fn firmware_names_equal_host_names_lines_of_text() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("lines.txt"), text_lines(1000)).unwrap();
    let out = microgpt(
        dir.path(),
        &[
            "train",
            "--data",
            "lines.txt",
            "--config",
            "lines",
            "--steps",
            "300",
            "--batch",
            "16",
            "--out",
            "lines.bin",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    firmware_names_equal_host_names(Some(&dir.path().join("lines.bin")));
}

/// Weights of a shape the firmware was not built for: refused at boot, by name, never
/// run as another config.
#[test]
fn firmware_refuses_a_shape_it_was_not_built_for() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd.bin");
    fs::write(&odd, odd_weights()).unwrap();
    let elf = build_firmware(Board::Qemu(Some(odd)), dir.path());
    let out = run_in_qemu(&elf);
    let log = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("a shape this firmware was not built for")
            && log.contains("embd: 8, heads: 2")
            && log.contains("it holds makemore"),
        "{log}"
    );
    assert!(!log.contains("name 1:"), "no names: {log}");
}

#[test]
fn firmware_refuses_corrupt_weights() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut weights = fs::read(root().join("data/micro.bin")).unwrap();
    weights[8000] ^= 0x40;
    let corrupt = dir.path().join("corrupt.bin");
    fs::write(&corrupt, &weights).unwrap();
    // The build refuses it, in one line that says what to do...
    let (build, _) = try_build_firmware(&Board::Qemu(Some(corrupt.clone())));
    let err = text(&build.stderr);
    assert!(!build.status.success());
    assert!(
        err.contains("MICROGPT_WEIGHTS: ")
            && err.contains("corrupt.bin is not a usable weight file: the weight file is corrupt")
            && !err.contains("panicked"),
        "{err}"
    );
    let (build, _) = try_build_firmware(&Board::Qemu(Some(dir.path().join("missing.bin"))));
    let err = text(&build.stderr);
    assert!(
        !build.status.success()
            && err.contains("cannot read the weights")
            && !err.contains("panicked"),
        "{err}"
    );
    // ...and so does the firmware at boot, should flash be damaged after the build.
    let elf = build_firmware(Board::QemuUnchecked(corrupt), dir.path());
    let out = run_in_qemu(&elf);
    let log = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the firmware must fail on corrupt weights: {log}"
    );
    assert!(
        log.contains("the flashed weights are invalid: ChecksumMismatch"),
        "{log}"
    );
    assert!(!log.contains("name 1:"), "no names from bad weights: {log}");
}

/// text + data in flash, data + bss in RAM, from the ELF.
fn sizes(elf: &std::path::Path) -> (u64, u64) {
    let out = Command::new("size")
        .arg(elf)
        .output()
        .expect("binutils' size runs");
    let line = text(&out.stdout)
        .lines()
        .nth(1)
        .expect("size prints a table")
        .to_owned();
    let n: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    (n[0] + n[1], n[1] + n[2])
}

#[test]
fn both_boards_fit_the_nrf52840() {
    let dir = tempfile::tempdir().unwrap();
    for board in [Board::Nrf52840dk, Board::Qemu(None)] {
        let elf = build_firmware(board, dir.path());
        let (flash, ram) = sizes(&elf);
        eprintln!(
            "{}: {flash} bytes of flash, {ram} bytes of static RAM",
            elf.display()
        );
        assert!(flash <= 1024 * 1024 && ram <= 256 * 1024);
        // The shipped weights are in the image.
        assert!(flash > fs::metadata(root().join("data/micro.bin")).unwrap().len());
    }
}
