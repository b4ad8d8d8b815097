//! The `microgpt` binary end to end, on real files.

use std::fs;
use std::path::Path;

use microgpt_tests::{microgpt, odd_weights, root};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The first `n` names of the shipped dataset, in a file of their own.
fn names_file(dir: &Path, n: usize) -> std::path::PathBuf {
    let all = fs::read_to_string(root().join("data/names.txt"))
        .expect("data/names.txt ships with the repository");
    let path = dir.join("names.txt");
    fs::write(&path, all.lines().take(n).collect::<Vec<_>>().join("\n")).unwrap();
    path
}

/// The validation loss that `train` reports on stdout ("... | val loss 3.3146 | ...").
fn val_loss(out: &std::process::Output) -> f64 {
    let report = text(&out.stdout);
    let loss = report
        .split("val loss ")
        .nth(1)
        .and_then(|r| r[..6].parse().ok());
    loss.unwrap_or_else(|| panic!("{report}"))
}

fn losses(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| {
            l.split("| loss ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn train_lowers_the_loss_and_writes_weights_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_file(dir.path(), 500);
    let out = microgpt(
        dir.path(),
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "400",
            "--batch",
            "4",
            "--out",
            "w.bin",
            "--plot",
            "loss.svg",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let l = losses(&stderr);
    assert!(
        l.len() >= 10,
        "periodic lines when stderr is not a terminal: {stderr}"
    );
    assert!(l[0] > l[l.len() - 1] + 0.3, "the loss should fall: {l:?}");
    // The final line: steps, train and validation loss, time.
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("step 400/400 | train loss ")
            && last.contains("| val loss ")
            && last.contains(" s"),
        "{last}"
    );
    assert!(fs::metadata(dir.path().join("w.bin")).unwrap().len() > 16_000);
    assert!(fs::metadata(dir.path().join("w.bin.ckpt")).is_ok());
    let svg = fs::read_to_string(dir.path().join("loss.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("validation"));
    // No temporary files are left behind.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["loss.svg", "names.txt", "w.bin", "w.bin.ckpt"]);
}

fn train_small(dir: &Path, extra: &[&str]) -> std::process::Output {
    let data = names_file(dir, 300);
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "60",
        "--batch",
        "4",
    ];
    args.extend_from_slice(extra);
    let out = microgpt(dir, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

#[test]
fn sample_prints_exactly_the_names() {
    let dir = tempfile::tempdir().unwrap();
    train_small(dir.path(), &["--out", "w.bin"]);
    let vocab: String = fs::read_to_string(dir.path().join("names.txt"))
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let run = |args: &[&str]| {
        let out = microgpt(
            dir.path(),
            &[&["sample", "--weights", "w.bin"], args].concat(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let a = run(&["--count", "37", "--seed", "7"]);
    assert_eq!(a.lines().count(), 37);
    assert!(
        a.lines()
            .all(|n| n.chars().count() <= 16 && n.chars().all(|c| vocab.contains(c))),
        "{a}"
    );
    assert_eq!(
        a,
        run(&["--count", "37", "--seed", "7"]),
        "the same seed gives the same names"
    );
    assert_ne!(a, run(&["--count", "37", "--seed", "8"]));
    let b = run(&["--count", "5", "--prefix", "jo"]);
    assert!(
        b.lines().count() == 5 && b.lines().all(|n| n.starts_with("jo")),
        "{b}"
    );
    assert_eq!(run(&["--count", "0"]), "");
}

/// `sample --fast` (the register decoder for micro's shape, the SIMD kernels for the
/// others) gives the exact names but for a draw within rounding of a boundary, about one
/// in 400,000 here. After such a draw the names can differ in length, and so put the
/// random stream out of step for every later name: the first 200 must be the same.
#[test]
fn sample_fast_gives_the_exact_names_but_for_rounding() {
    let dir = tempfile::tempdir().unwrap();
    for weights in [
        "data/micro.bin",
        "data/makemore.bin",
        "data/large-distilled.int8",
    ] {
        let weights = root().join(weights);
        let run = |fast: &[&str], prefix: &str| {
            let args = [
                &["sample", "--weights", weights.to_str().unwrap()][..],
                &["--count", "200", "--seed", "3", "--prefix", prefix],
                fast,
            ]
            .concat();
            let out = microgpt(dir.path(), &args);
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout)
        };
        for prefix in ["", "an"] {
            let (exact, fast) = (run(&[], prefix), run(&["--fast"], prefix));
            assert_eq!(fast.lines().count(), 200);
            assert!(fast.lines().all(|n| n.starts_with(prefix)), "{fast}");
            assert_eq!(fast, exact, "{}", weights.display());
        }
    }
}

#[test]
fn eval_survives_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    train_small(dir.path(), &["--out", "w.bin"]);
    let eval = |w: &str| {
        let out = microgpt(dir.path(), &["eval", "--weights", w, "--data", "names.txt"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let before = eval("w.bin");
    let loss: f64 = before.trim().parse().unwrap();
    assert!(loss > 1.0 && loss < 3.5, "{loss}");
    let out = microgpt(
        dir.path(),
        &["export", "--weights", "w.bin", "--out", "w.safetensors"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = microgpt(
        dir.path(),
        &["import", "--from", "w.safetensors", "--out", "back.bin"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(eval("back.bin"), before);
    assert_eq!(
        fs::read(dir.path().join("back.bin")).unwrap(),
        fs::read(dir.path().join("w.bin")).unwrap()
    );
}

/// `eval --held-out S` scores the names that `train --split-seed S` held out: the
/// validation loss that `train` printed, and not that of another seed's names.
#[test]
fn eval_held_out_scores_the_validation_names() {
    let dir = tempfile::tempdir().unwrap();
    let trained = train_small(
        dir.path(),
        &["--seed", "5", "--split-seed", "7", "--out", "w.bin"],
    );
    let eval = |held_out: &[&str]| {
        let args = [
            &["eval", "--weights", "w.bin", "--data", "names.txt"],
            held_out,
        ]
        .concat();
        let out = microgpt(dir.path(), &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let loss: f64 = text(&out.stdout).trim().parse().unwrap();
        (loss, text(&out.stderr))
    };
    let (held_out, said) = eval(&["--held-out", "7"]);
    assert!((held_out - val_loss(&trained)).abs() < 6e-5, "{held_out}");
    assert!(said.contains("30 names held out by seed 7"), "{said}");
    for other in [eval(&["--held-out", "5"]).0, eval(&[]).0] {
        assert!((other - held_out).abs() > 1e-4, "{other} {held_out}");
    }
}

/// A list too short to hold out a name (validation takes 10%) is refused with a clear
/// error, by `eval --held-out` and by `quantize --data` before it writes anything,
/// rather than scored as NaN; ten names hold out one.
#[test]
fn held_out_scoring_refuses_a_list_too_short_to_hold_any_out() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = root().join("data/micro.bin");
    let weights = shipped.to_str().unwrap();
    let data = names_file(dir.path(), 9);
    let data = data.to_str().unwrap();
    let eval = || {
        let args = [
            "eval",
            "--weights",
            weights,
            "--data",
            data,
            "--held-out",
            "42",
        ];
        microgpt(dir.path(), &args)
    };
    let args = [
        "quantize",
        "--weights",
        weights,
        "--out",
        "w.int8",
        "--data",
        data,
    ];
    let quantize = microgpt(dir.path(), &args);
    for out in [&eval(), &quantize] {
        let said = text(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains("has 9 names, too few to hold any out"),
            "{said}"
        );
        assert!(!text(&out.stdout).contains("NaN"));
    }
    assert!(!dir.path().join("w.int8").exists());

    names_file(dir.path(), 10);
    let out = eval();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 name held out by seed 42"));
    let loss: f64 = text(&out.stdout).trim().parse().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
}

/// int8 weights: a quarter of the size, read by `sample`, `eval` and `export`, and
/// within a stated loss of their f32 source on the names held out in training.
#[test]
fn quantize_writes_int8_weights_that_cost_little_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = root().join("data/names.txt");
    let (data, shipped) = (data.to_str().unwrap(), root().join("data/micro.bin"));
    let out = microgpt(
        dir.path(),
        &[
            "quantize",
            "--weights",
            shipped.to_str().unwrap(),
            "--out",
            "w.int8",
            "--data",
            data,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // "validation loss on the 1000 names held out by seed 42: f32 X, int8 Y (+D)"
    let report = text(&out.stdout);
    let number = |key: &str| -> f64 {
        let rest = report
            .split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("{report}"));
        rest.trim_start_matches(' ')
            .split([',', ' '])
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{report}"))
    };
    let (f32_loss, int8_loss) = (number("f32"), number("int8"));
    // The shipped micro model loses well under 0.01 nats to int8 (0.0000 measured).
    assert!((int8_loss - f32_loss).abs() < 0.01, "{report}");
    assert!((1.5..3.0).contains(&f32_loss), "{report}");
    let (int8, f32) = (
        fs::read(dir.path().join("w.int8")).unwrap(),
        fs::read(&shipped).unwrap(),
    );
    assert!(
        int8.len() * 3 < f32.len(),
        "{} of {}",
        int8.len(),
        f32.len()
    );

    // eval on the int8 file agrees with the validation figure's model: every name.
    let eval = microgpt(dir.path(), &["eval", "--weights", "w.int8", "--data", data]);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let all: f64 = text(&eval.stdout).trim().parse().unwrap();
    assert!((all - int8_loss).abs() < 0.2, "{all} against {int8_loss}");
    let sample = microgpt(
        dir.path(),
        &["sample", "--weights", "w.int8", "--count", "7"],
    );
    assert!(sample.status.success(), "{}", text(&sample.stderr));
    assert_eq!(text(&sample.stdout).lines().count(), 7);
    let export = microgpt(
        dir.path(),
        &["export", "--weights", "w.int8", "--out", "w.safetensors"],
    );
    assert!(export.status.success(), "{}", text(&export.stderr));

    // An int8 file is not quantised again, and a damaged one is refused by name.
    let err = fails(
        dir.path(),
        &["quantize", "--weights", "w.int8", "--out", "again.int8"],
    );
    assert!(err.contains("int8 weights already"), "{err}");
    let mut bad = int8.clone();
    bad[100] ^= 1;
    fs::write(dir.path().join("bad.int8"), bad).unwrap();
    let err = fails(dir.path(), &["sample", "--weights", "bad.int8"]);
    assert!(
        err.contains("bad.int8 is not a usable weight file"),
        "{err}"
    );
}

#[test]
fn resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    train_small(dir.path(), &["--out", "straight.bin", "--threads", "2"]);
    train_small(
        dir.path(),
        &[
            "--out",
            "halves.bin",
            "--threads",
            "2",
            "--stop-after",
            "25",
        ],
    );
    let out = train_small(
        dir.path(),
        &["--out", "halves.bin", "--threads", "2", "--resume"],
    );
    assert!(
        text(&out.stderr).contains("resuming from"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        fs::read(dir.path().join("straight.bin")).unwrap(),
        fs::read(dir.path().join("halves.bin")).unwrap()
    );
    // A checkpoint of another run is refused.
    let out = microgpt(
        dir.path(),
        &[
            "train",
            "--data",
            "names.txt",
            "--steps",
            "60",
            "--batch",
            "2",
            "--out",
            "halves.bin",
            "--resume",
        ],
    );
    assert!(
        !out.status.success() && text(&out.stderr).contains("batch"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn reshuffled_runs_take_new_batches_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_file(dir.path(), 300);
    // 150 steps of 4 names: more than two passes over the 270 training names.
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "--data", data.to_str().unwrap(), "--steps", "150"];
        args.extend_from_slice(&["--batch", "4", "--threads", "1"]);
        args.extend_from_slice(extra);
        microgpt(dir.path(), &args)
    };
    for extra in [
        &["--out", "cycled.bin"][..],
        &["--out", "straight.bin", "--reshuffle"],
        &["--out", "halves.bin", "--reshuffle", "--stop-after", "100"],
        &["--out", "halves.bin", "--reshuffle", "--resume"],
    ] {
        let out = run(extra);
        assert!(out.status.success(), "{extra:?}: {}", text(&out.stderr));
    }
    let read = |n: &str| fs::read(dir.path().join(n)).unwrap();
    assert_eq!(read("straight.bin"), read("halves.bin"));
    assert_ne!(read("straight.bin"), read("cycled.bin"));
    // A reshuffled run's checkpoint does not continue a cycled one.
    let out = run(&["--out", "halves.bin", "--resume"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("order \"reshuffled\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn same_seed_and_threads_train_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    train_small(dir.path(), &["--out", "a.bin", "--threads", "2"]);
    train_small(dir.path(), &["--out", "b.bin", "--threads", "2"]);
    train_small(
        dir.path(),
        &["--out", "c.bin", "--threads", "2", "--seed", "43"],
    );
    let read = |n: &str| fs::read(dir.path().join(n)).unwrap();
    assert_eq!(read("a.bin"), read("b.bin"));
    assert_ne!(read("a.bin"), read("c.bin"));
}

/// `--teacher` drives the target: a student of an untrained teacher with `--distill 1`
/// learns nothing (its loss stays near the teacher's uniform guess) where the names
/// alone teach it; at 0.5 it gives other weights than no teacher, the same on a resume,
/// and a checkpoint refuses a resume without its teacher. A wider and deeper teacher
/// teaches too; one of another block size or of other characters is refused.
#[test]
fn teachers_drive_the_target_and_must_fit_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let alone = train_small(d, &["--out", "alone.bin"]);
    let train = ["train", "--data", "names.txt"];
    let untrained = ["--steps", "0", "--seed", "7", "--out", "blank.bin"];
    let blank = microgpt(d, &[&train[..], &untrained].concat());
    assert!(blank.status.success(), "{}", text(&blank.stderr));
    let copied = train_small(
        d,
        &[
            "--out",
            "copied.bin",
            "--teacher",
            "blank.bin",
            "--distill",
            "1",
        ],
    );
    let (alone, copied) = (val_loss(&alone), val_loss(&copied));
    assert!(
        alone < 3.0 && copied > 3.2,
        "{alone} {copied} against ln 27 = 3.30"
    );
    let err = text(&train_small(d, &["--out", "half.bin", "--teacher", "alone.bin"]).stderr);
    assert!(err.contains("learning from 1 teacher as well"), "{err}");
    let read = |n: &str| fs::read(d.join(n)).unwrap();
    assert_ne!(read("half.bin"), read("alone.bin"));
    let half = ["--out", "halves.bin", "--teacher", "alone.bin"];
    train_small(d, &[&half[..], &["--stop-after", "25"]].concat());
    let resumed = train_small(d, &[&half[..], &["--resume"]].concat());
    assert!(text(&resumed.stderr).contains("resuming from"));
    assert_eq!(read("half.bin"), read("halves.bin"));
    train_small(d, &[&half[..], &["--stop-after", "25"]].concat());
    let without = [
        "--steps",
        "60",
        "--batch",
        "4",
        "--out",
        "halves.bin",
        "--resume",
    ];
    let err = fails(d, &[&train[..], &without].concat());
    assert!(err.contains("teachers"), "{err}");

    // A wider and deeper teacher teaches through its probabilities, made before the
    // first step: with --distill 1 the student learns what it knows, where the blank
    // teacher above taught nothing.
    let makemore = root().join("data/makemore.bin");
    let deeper = ["--teacher", makemore.to_str().unwrap(), "--distill", "1"];
    let taught = train_small(d, &[&["--out", "deeper.bin"], &deeper[..]].concat());
    let err = text(&taught.stderr);
    assert!(
        err.contains("learning from 1 teacher") && err.contains("made once"),
        "{err}"
    );
    assert!(val_loss(&taught) < 3.0, "{}", val_loss(&taught));
    // One that reads another number of positions cannot give a name's rows.
    let lines = ["--config", "lines", "--steps", "0", "--out", "lines.bin"];
    let blank = microgpt(d, &[&train[..], &lines].concat());
    assert!(blank.status.success(), "{}", text(&blank.stderr));
    let err = fails(d, &[&train[..], &["--teacher", "lines.bin"]].concat());
    assert!(
        err.contains("reads 64 positions") && err.contains("same --block"),
        "{err}"
    );
    fs::write(d.join("abc.txt"), "abc\ncab\nbca\n").unwrap();
    let err = fails(d, &["train", "--data", "abc.txt", "--teacher", "alone.bin"]);
    assert!(err.contains("other characters"), "{err}");
    // clap's own usage error, status 2.
    let out = microgpt(d, &[&train[..], &["--distill", "0.5"]].concat());
    let err = text(&out.stderr);
    assert!(
        out.status.code() == Some(2) && err.contains("--teacher"),
        "{err}"
    );
    let zero = ["--teacher", "alone.bin", "--distill", "0"];
    let err = fails(d, &[&train[..], &zero].concat());
    assert!(err.contains("--distill must be in (0, 1]"), "{err}");
}

/// Threads beyond the batch's names get no work: asking for 500 trains the weights of
/// one thread a name, with no more threads than that, and a warning when they are more
/// than the cores.
#[test]
fn threads_beyond_the_names_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let many = train_small(dir.path(), &["--out", "many.bin", "--threads", "500"]);
    train_small(dir.path(), &["--out", "four.bin", "--threads", "4"]);
    let read = |n: &str| fs::read(dir.path().join(n)).unwrap();
    assert_eq!(read("many.bin"), read("four.bin"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let err = text(&many.stderr);
    assert_eq!(
        err.contains("warning: --threads 4 is more than the"),
        cores < 4,
        "{err}"
    );
}

/// `--split-seed` holds out the validation names of another seed: a run of seed 43 is
/// scored on seed 42's names (its untrained weights score there as `quantize --held-out
/// 42` scores them, or `--seed 42`, its older name), its weights still start from seed
/// 43, and its checkpoint refuses a resume with another split.
#[test]
fn split_seed_scores_other_seeds_on_the_same_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = names_file(d, 300);
    let data = data.to_str().unwrap();
    let untrained = |seed: &str, split: &[&str], out: &str| {
        let mut args = vec!["train", "--data", data, "--steps", "0", "--seed", seed];
        args.extend_from_slice(split);
        args.extend_from_slice(&["--out", out]);
        let run = microgpt(d, &args);
        assert!(run.status.success(), "{}", text(&run.stderr));
        run
    };
    let (default, same) = (
        untrained("42", &[], "a.bin"),
        untrained("42", &["--split-seed", "42"], "b.bin"),
    );
    assert_eq!(
        fs::read(d.join("a.bin")).unwrap(),
        fs::read(d.join("b.bin")).unwrap()
    );
    assert_eq!(val_loss(&default), val_loss(&same));
    let other = untrained("43", &["--split-seed", "42"], "c.bin");
    assert_ne!(
        fs::read(d.join("a.bin")).unwrap(),
        fs::read(d.join("c.bin")).unwrap()
    );
    let scored = |flag: &str, seed: &str| {
        let args = [
            "quantize",
            "--weights",
            "c.bin",
            "--out",
            "c.int8",
            "--data",
            data,
        ];
        let out = microgpt(d, &[&args[..], &[flag, seed]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let report = text(&out.stdout);
        let f32 = report
            .split("f32 ")
            .nth(1)
            .and_then(|r| r[..7].parse::<f64>().ok());
        f32.unwrap_or_else(|| panic!("{report}"))
    };
    // The same loss, printed to 4 decimals by train and to 5 by quantize.
    let (ours, held_out, own) = (
        val_loss(&other),
        scored("--held-out", "42"),
        scored("--seed", "43"),
    );
    assert!((ours - held_out).abs() < 6e-5, "{ours} against {held_out}");
    assert!((ours - own).abs() > 1e-3, "{ours} against {own}");

    let run = |extra: &[&str]| {
        let args = ["train", "--data", data, "--seed", "43", "--out", "r.bin"];
        microgpt(d, &[&args[..], extra].concat())
    };
    let first = run(&["--steps", "20", "--stop-after", "10", "--split-seed", "42"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let resumed = run(&["--steps", "20", "--resume"]);
    assert!(!resumed.status.success());
    assert!(
        text(&resumed.stderr).contains("split"),
        "{}",
        text(&resumed.stderr)
    );
}

/// The warning counts the names cut, in words that fit one name or many.
#[test]
fn long_names_are_cut_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let long = "abcdefghijklmnopqrstuvwxyz";
    for (copies, want) in [
        (
            1,
            "warning: 1 name in long.txt is longer than 15 characters and is cut",
        ),
        (
            2,
            "warning: 2 names in long.txt are longer than 15 characters and are cut",
        ),
    ] {
        fs::write(
            dir.path().join("long.txt"),
            format!("{}ann\nbob\n", format!("{long}\n").repeat(copies)),
        )
        .unwrap();
        let out = microgpt(
            dir.path(),
            &[
                "train", "--data", "long.txt", "--steps", "5", "--out", "w.bin",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains(want) && err.contains("cut to the context of 16"),
            "{err}"
        );
    }
}

/// Runs a command that must fail, and returns its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = microgpt(dir, args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} should fail with status 1: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    err
}

#[test]
fn bad_input_gets_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let train = |file: &str| {
        fails(
            d,
            &["train", "--data", file, "--steps", "3", "--out", "w.bin"],
        )
    };

    let err = train("missing.txt");
    assert!(
        err.contains("cannot read the dataset missing.txt") && err.contains("No such file"),
        "{err}"
    );

    fs::write(d.join("empty.txt"), "\n  \n\n").unwrap();
    assert!(train("empty.txt").contains("empty.txt has no names"));

    fs::write(d.join("latin1.txt"), b"ann\nb\xe9a\n").unwrap();
    let err = train("latin1.txt");
    assert!(
        err.contains("latin1.txt is not UTF-8") && err.contains("line 2"),
        "{err}"
    );

    // 300 distinct characters: more than any vocabulary holds.
    let wide: String = (0..300u32)
        .map(|i| char::from_u32(0x4e00 + i).unwrap().to_string() + "\n")
        .collect();
    fs::write(d.join("wide.txt"), wide).unwrap();
    let err = train("wide.txt");
    assert!(err.contains("more than 255 distinct characters"), "{err}");

    // Weights: missing, corrupt, truncated, not weights at all, and a shape no config has.
    let err = fails(d, &["sample", "--weights", "nope.bin"]);
    assert!(err.contains("cannot read the weights nope.bin"), "{err}");
    train_small(d, &["--out", "w.bin"]);
    let err = fails(d, &["train", "--data", "names.txt", "--batch", "99"]);
    assert!(err.contains("--batch must be between 1 and 32"), "{err}");
    // Negative numbers reach the options' own checks rather than reading as flags.
    let err = fails(d, &["train", "--data", "names.txt", "--lr", "-1"]);
    assert!(err.contains("--lr must be a positive number"), "{err}");
    for (option, rate) in [
        ("--dropout", "1"),
        ("--token-dropout", "1.5"),
        ("--dropout", "-0.1"),
    ] {
        let err = fails(d, &["train", "--data", "names.txt", option, rate]);
        assert!(
            err.contains(&format!("{option} must be in [0, 1)")),
            "{err}"
        );
    }
    let mut bytes = fs::read(d.join("w.bin")).unwrap();
    bytes[5000] ^= 1;
    fs::write(d.join("flipped.bin"), &bytes).unwrap();
    let err = fails(d, &["sample", "--weights", "flipped.bin"]);
    assert!(
        err.contains("flipped.bin is not a usable weight file") && err.contains("corrupt"),
        "{err}"
    );
    fs::write(d.join("short.bin"), &bytes[..1000]).unwrap();
    assert!(
        fails(
            d,
            &["eval", "--weights", "short.bin", "--data", "names.txt"]
        )
        .contains("truncated")
    );
    assert!(fails(d, &["sample", "--weights", "names.txt"]).contains("not a microgpt weight file"));
    fs::write(d.join("odd.bin"), odd_weights()).unwrap();
    let err = fails(d, &["sample", "--weights", "odd.bin"]);
    assert!(
        err.contains("the model in odd.bin has the shape embd 8, 2 heads")
            && err.contains("which this build does not include")
            && err.contains("makemore  --embd 64"),
        "{err}"
    );

    // Weights and data that do not go together.
    fs::write(d.join("caps.txt"), "Ann\nBob\n").unwrap();
    assert!(
        fails(d, &["eval", "--weights", "w.bin", "--data", "caps.txt"])
            .contains("which the model does not know")
    );
    assert!(fails(d, &["sample", "--weights", "w.bin", "--prefix", "Q"]).contains("does not know"));
    assert!(
        fails(d, &["sample", "--weights", "w.bin", "--temperature", "-1"]).contains("temperature")
    );
}

/// `bench` prints its table even when a peer is missing or fails: the peer is skipped
/// with a note that says why.
#[test]
fn bench_keeps_its_figures_when_a_peer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("broken.py"),
        "raise SystemExit('broken on purpose')\n",
    )
    .unwrap();
    let (data, weights) = (root().join("data/names.txt"), root().join("data/micro.bin"));
    let out = microgpt(
        d,
        &[
            "bench",
            "--repeat",
            "1",
            "--data",
            data.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--numpy-peer",
            "missing.py",
            "--framework-peer",
            "missing.py",
            "--microgpt-py",
            "broken.py",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("| benchmark | this machine |"),
        "{stdout}"
    );
    assert!(stdout.contains("| machine | "), "{stdout}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        stdout.contains("| a round trip between two threads"),
        cores > 1,
        "{stdout}"
    );
    assert!(
        stdout.contains("the register decoder with every step made"),
        "{stdout}"
    );
    assert!(stdout.contains("| microgpt's schedule"), "{stdout}");
    assert!(
        stdout.contains("| makemore, batch 32, 2 threads"),
        "{stdout}"
    );
    assert!(
        stderr.contains("microgpt.py failed and is skipped")
            && stderr.contains("broken on purpose"),
        "{stderr}"
    );
    assert!(stderr.contains("not at missing.py"), "{stderr}");
}

#[test]
fn help_explains_every_command() {
    let out = microgpt(root(), &["--help"]);
    let help = text(&out.stdout);
    for cmd in ["train", "sample", "eval", "quantize", "export", "import"] {
        assert!(help.contains(cmd), "{help}");
    }
    assert!(help.contains("With no command, runs the main job"));
    let out = microgpt(root(), &["train", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("--resume"));
    // The help sends the reader to the shipped weights' commands: they must be there.
    assert!(help.contains("data/README.md"), "{help}");
    let recipes = std::fs::read_to_string(root().join("data/README.md")).unwrap();
    let large = "train --data data/names.txt --config large";
    assert!(recipes.contains(large), "data/README.md lacks `{large}`");
}
