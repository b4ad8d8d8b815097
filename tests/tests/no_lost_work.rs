//! Never lose a run, never harm a file: checkpoints that survive `kill -9`, SIGINT and
//! SIGTERM, writes that refuse to replace what they should not, and divergence stopped at
//! once. The real binary, real signals, real files.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use microgpt_tests::{microgpt, microgpt_bin, root};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A run long enough to be interrupted (a few seconds), with a checkpoint every 500
/// steps, on one thread so that its bytes are reproducible.
fn long_run(extra: &[&str]) -> Vec<String> {
    let data = root().join("data/names.txt");
    let mut args: Vec<String> = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "30000",
        "--batch",
        "8",
        "--threads",
        "1",
        "--checkpoint-every",
        "500",
        "--out",
        "w.bin",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start(dir: &Path, args: &[String]) -> Child {
    Command::new(microgpt_bin())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Waits for the first checkpoint of a run: it is renamed into place whole.
fn wait_for_checkpoint(dir: &Path, child: &mut Child) {
    let started = Instant::now();
    while !dir.join("w.bin.ckpt").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The weights of the same run, uninterrupted.
fn uninterrupted() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(microgpt_bin())
        .args(long_run(&[]))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs::read(dir.path().join("w.bin")).unwrap()
}

#[test]
fn kill_9_then_resume_gives_the_weights_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), &long_run(&[]));
    wait_for_checkpoint(dir.path(), &mut child);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL: no chance to save anything
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed mid-way: {status:?}");
    assert!(
        !dir.path().join("w.bin").exists(),
        "no weights yet, only a checkpoint"
    );

    let out = Command::new(microgpt_bin())
        .args(long_run(&["--resume"]))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let step: usize = err
        .split("resuming from w.bin.ckpt at step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("says where it resumes: {err}"));
    assert!(
        step >= 500 && step.is_multiple_of(500) && step < 30000,
        "{err}"
    );
    assert_eq!(
        fs::read(dir.path().join("w.bin")).unwrap(),
        uninterrupted(),
        "resumed at step {step}"
    );
}

#[test]
fn sigint_and_sigterm_save_the_weights_and_say_how_to_resume() {
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = start(dir.path(), &long_run(&[]));
        wait_for_checkpoint(dir.path(), &mut child);
        signal(&child, name);
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "SIG{name}: {err}");
        assert!(
            err.contains(&format!("stopped by SIG{name}"))
                && err.contains("wrote w.bin and its checkpoint w.bin.ckpt")
                && err.contains("add --resume"),
            "{err}"
        );
        // The weights are usable, and the run goes on from where it stopped.
        let sample = microgpt(
            dir.path(),
            &["sample", "--weights", "w.bin", "--count", "3"],
        );
        assert!(sample.status.success(), "{}", text(&sample.stderr));
        if name == "INT" {
            let out = Command::new(microgpt_bin())
                .args(long_run(&["--resume"]))
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert_eq!(fs::read(dir.path().join("w.bin")).unwrap(), uninterrupted());
        }
    }
}

/// Runs a command that must fail at once, before any training step.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = microgpt(dir, args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("step ") && !err.contains("panicked"), "{err}");
    err
}

#[test]
fn writes_never_replace_what_they_should_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::copy(root().join("data/names.txt"), d.join("names.txt")).unwrap();
    let names = fs::read(d.join("names.txt")).unwrap();
    let train = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            "names.txt",
            "--steps",
            "20",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(d, &args)
    };

    // A FIFO, and a character device when we may make one: refused, left as they are.
    assert!(
        Command::new("mkfifo")
            .arg(d.join("fifo"))
            .status()
            .unwrap()
            .success()
    );
    let err = run(train("fifo", &[]));
    assert!(
        err.contains("fifo is a FIFO") && err.contains("would not replace it"),
        "{err}"
    );
    let err = run(train("w.bin", &["--plot", "fifo"]));
    assert!(err.contains("--plot fifo is a FIFO"), "{err}");
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata(d.join("fifo")).unwrap().file_type().is_fifo());
    let made = Command::new("mknod")
        .arg(d.join("null"))
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let err = run(train("null", &[]));
        assert!(err.contains("null is a character device"), "{err}");
        assert!(
            fs::metadata(d.join("null"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    // The dataset, by another name or through a link, and two outputs that are one file.
    for out in ["names.txt", "./names.txt"] {
        let err = run(train(out, &[]));
        assert!(
            err.contains("is the same file as --data names.txt"),
            "{err}"
        );
    }
    std::os::unix::fs::symlink("names.txt", d.join("alias.txt")).unwrap();
    assert!(run(train("alias.txt", &[])).contains("same file as --data"));
    let err = run(train("w.bin", &["--plot", "./w.bin"]));
    assert!(
        err.contains("--plot ./w.bin is the same file as --out w.bin"),
        "{err}"
    );
    let err = run(train("w.bin", &["--plot", "w.bin.ckpt"]));
    assert!(err.contains("same file as the checkpoint"), "{err}");
    assert_eq!(
        fs::read(d.join("names.txt")).unwrap(),
        names,
        "the dataset is intact"
    );

    // Folders that cannot take the file: checked before the first step.
    let err = run(train("missing/w.bin", &[]));
    assert!(err.contains("cannot write in the folder missing"), "{err}");
    let err = run(train("w.bin", &["--plot", "names.txt/loss.svg"]));
    assert!(
        err.contains("--plot names.txt/loss.svg: cannot write in the folder"),
        "{err}"
    );

    // A symlink as --out: its target gets the weights, and the link stays a link.
    fs::write(d.join("target.bin"), b"old").unwrap();
    std::os::unix::fs::symlink("target.bin", d.join("link.bin")).unwrap();
    let args = train("link.bin", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = microgpt(d, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        fs::symlink_metadata(d.join("link.bin"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::read(d.join("target.bin"))
            .unwrap()
            .starts_with(b"MGPTWGT")
    );
    assert!(
        fs::symlink_metadata(d.join("link.bin.ckpt"))
            .unwrap()
            .is_file()
    );
}

#[test]
fn divergence_stops_training_and_bad_weights_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = root().join("data/names.txt");
    let data = data.to_str().unwrap();
    let out = microgpt(
        d,
        &["train", "--data", data, "--lr", "1e9", "--out", "w.bin"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("training diverged at step ") && err.contains("try a lower --lr"),
        "{err}"
    );
    assert!(!d.join("w.bin").exists(), "no weights from a diverged run");
    // A rate that does not diverge but learns nothing is worth a warning.
    let out = microgpt(
        d,
        &[
            "train", "--data", data, "--lr", "1", "--steps", "300", "--out", "hi.bin",
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: the loss at step 101 is ")
            && err.contains("far above a uniform guess over the vocabulary (3.296)"),
        "{err}"
    );

    // A good model, then its state dict with a NaN in the last tensor.
    let out = microgpt(
        d,
        &["train", "--data", data, "--steps", "50", "--out", "w.bin"],
    );
    assert!(out.status.success());
    assert!(
        microgpt(d, &["export", "--weights", "w.bin", "--out", "w.st"])
            .status
            .success()
    );
    let mut st = fs::read(d.join("w.st")).unwrap();
    let n = st.len();
    st[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    fs::write(d.join("nan.st"), &st).unwrap();
    let out = microgpt(d, &["import", "--from", "nan.st", "--out", "nan.bin"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nan.st is not a usable state dict: ") && err.contains(" holds NaN at index "),
        "{err}"
    );
    assert!(!d.join("nan.bin").exists());

    // A checkpoint, a state dict, and a weight file with bytes after its end.
    let sample = |w: &str| text(&microgpt(d, &["sample", "--weights", w]).stderr);
    assert!(
        sample("w.bin.ckpt").contains("w.bin.ckpt is a training checkpoint, not a weight file")
    );
    assert!(sample("w.st").contains("microgpt import --from w.st"));
    let mut long = fs::read(d.join("w.bin")).unwrap();
    long.extend_from_slice(b"tail");
    fs::write(d.join("long.bin"), long).unwrap();
    assert!(sample("long.bin").contains("it has 4 bytes after the"));
}
