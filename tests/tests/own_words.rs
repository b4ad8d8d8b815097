//! Any list of words or lines, and every shipped model shape, end to end: the real
//! binary on real files.

use std::fs;
use std::path::Path;
use std::process::Output;

use microgpt_tests::{cjk_names, microgpt, mixed_case_names, text_lines};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = microgpt(dir, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    out
}

/// The characters of a list, without line ends.
fn chars_of(list: &str) -> std::collections::BTreeSet<char> {
    list.chars().filter(|&c| c != '\n').collect()
}

/// Trains on `list` with `shape`, then checks what a user would: the vocabulary is the
/// list's, the eval loss beats a uniform guess over it, and every sampled character is
/// one of the list's.
fn learns(list: &str, shape: &[&str], steps: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("list.txt"), list).unwrap();
    let mut args = vec![
        "train", "--data", "list.txt", "--steps", steps, "--batch", "16",
    ];
    args.extend_from_slice(shape);
    args.extend_from_slice(&["--out", "w.bin"]);
    let train = ok(d, &args);
    assert!(
        !text(&train.stderr).contains("warning"),
        "{}",
        text(&train.stderr)
    );

    let vocab = chars_of(list);
    let eval = ok(d, &["eval", "--weights", "w.bin", "--data", "list.txt"]);
    let loss: f64 = text(&eval.stdout).trim().parse().unwrap();
    let uniform = ((vocab.len() + 1) as f64).ln();
    assert!(
        loss < uniform - 0.5,
        "eval loss {loss} against a uniform guess of {uniform}"
    );

    let names = text(&ok(d, &["sample", "--weights", "w.bin", "--count", "200"]).stdout);
    let names: Vec<String> = names.lines().map(str::to_owned).collect();
    assert_eq!(names.len(), 200);
    for name in &names {
        assert!(
            name.chars().all(|c| vocab.contains(&c)),
            "{name:?} has a character outside the list's"
        );
    }
    names
}

#[test]
fn mixed_case_names_with_accents_hyphens_and_apostrophes() {
    let list = mixed_case_names(3000);
    assert!(chars_of(&list).len() > 50, "the list is as varied as meant");
    let names = learns(&list, &[], "1500");
    // What the model learnt of the list's form: capitals first, and the marks it saw.
    let capitalised = names
        .iter()
        .filter(|n| n.starts_with(|c: char| c.is_uppercase()));
    assert!(capitalised.count() > 150, "{names:?}");
    assert!(
        names.iter().any(|n| n.contains('\'') || n.contains('-')),
        "{names:?}"
    );
}

#[test]
fn lines_of_20_to_60_characters_with_a_longer_context() {
    let list = text_lines(2000);
    assert!(list.lines().all(|l| (20..=60).contains(&l.chars().count())));
    let lines = learns(&list, &["--config", "lines"], "600");
    let long = lines.iter().filter(|l| l.chars().count() > 15).count();
    assert!(
        long > 100,
        "lines longer than microgpt's context: {lines:?}"
    );
    // The same shape, asked for by its dimensions.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("list.txt"), &list).unwrap();
    let out = ok(
        dir.path(),
        &[
            "train", "--data", "list.txt", "--embd", "32", "--layers", "2", "--block", "64",
            "--steps", "5", "--out", "w.bin",
        ],
    );
    assert!(
        !text(&out.stderr).contains("cut to the context"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn chinese_names() {
    let list = cjk_names(3000);
    let names = learns(&list, &[], "800");
    assert!(
        names.iter().all(|n| (1..=4).contains(&n.chars().count())),
        "{names:?}"
    );
}

#[test]
fn a_shape_that_is_not_compiled_in_lists_the_ones_that_are() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("list.txt"), "ann\nbob\n").unwrap();
    let out = microgpt(
        dir.path(),
        &[
            "train", "--data", "list.txt", "--embd", "24", "--out", "w.bin",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("embd 24, 4 heads, 1 layers, block 16"),
        "{err}"
    );
    for preset in ["micro", "mini", "lines", "makemore"] {
        assert!(err.contains(&format!("  {preset} ")), "{err}");
    }
    assert!(!dir.path().join("w.bin").exists());
    let help = text(&ok(dir.path(), &["train", "--help"]).stdout);
    assert!(
        help.contains("lines     --embd 32 --heads 4 --layers 2 --block 64"),
        "{help}"
    );
}

/// A weight file of every shipped shape, with either vocabulary capacity, goes through
/// `export` and `import` unchanged, and `eval` reads it.
#[test]
fn every_shipped_shape_round_trips_through_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lower = "emma\nolivia\nava\nisabella\nsophia\nmia\n";
    let mixed = mixed_case_names(40);
    fs::write(d.join("lower.txt"), lower).unwrap();
    fs::write(d.join("mixed.txt"), &mixed).unwrap();
    for preset in ["micro", "mini", "lines", "makemore"] {
        for list in ["lower.txt", "mixed.txt"] {
            ok(
                d,
                &[
                    "train", "--data", list, "--config", preset, "--steps", "2", "--out", "w.bin",
                ],
            );
            ok(
                d,
                &["export", "--weights", "w.bin", "--out", "w.safetensors"],
            );
            ok(
                d,
                &["import", "--from", "w.safetensors", "--out", "back.bin"],
            );
            assert_eq!(
                fs::read(d.join("w.bin")).unwrap(),
                fs::read(d.join("back.bin")).unwrap(),
                "{preset} on {list}"
            );
            let eval = |w: &str| text(&ok(d, &["eval", "--weights", w, "--data", list]).stdout);
            assert_eq!(eval("w.bin"), eval("back.bin"));
        }
    }
}

#[test]
fn novel_top_k_and_top_p() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = mixed_case_names(2000);
    fs::write(d.join("list.txt"), &list).unwrap();
    ok(
        d,
        &[
            "train", "--data", "list.txt", "--steps", "500", "--batch", "16", "--out", "w.bin",
        ],
    );
    let sample = |extra: &[&str]| {
        let out = ok(
            d,
            &[&["sample", "--weights", "w.bin", "--count", "100"], extra].concat(),
        );
        (text(&out.stdout), text(&out.stderr))
    };

    let (plain, _) = sample(&[]);
    let (marked, summary) = sample(&["--novel", "list.txt"]);
    let known: std::collections::HashSet<&str> = list.lines().collect();
    let mut new = 0;
    for (name, line) in plain.lines().zip(marked.lines()) {
        let (n, mark) = line.split_once('\t').expect("name, tab, mark");
        assert_eq!(n, name, "--novel does not change the names");
        assert_eq!(
            mark,
            if known.contains(name) {
                "in train"
            } else {
                "new"
            }
        );
        new += usize::from(mark == "new");
    }
    let are = if new == 1 { "is" } else { "are" };
    assert!(
        summary.contains(&format!("{new} of 100 names {are} new")),
        "{summary}"
    );

    // The defaults are microgpt's: keeping every token changes nothing.
    assert_eq!(sample(&["--top-k", "0", "--top-p", "1"]).0, plain);
    // One token left is the arg max, as at temperature 0.
    assert_eq!(
        sample(&["--top-k", "1"]).0,
        sample(&["--temperature", "0"]).0
    );
    let (narrow, _) = sample(&["--top-p", "0.3", "--temperature", "1.5"]);
    let (wide, _) = sample(&["--temperature", "1.5"]);
    let distinct = |s: &str| s.lines().collect::<std::collections::HashSet<_>>().len();
    assert!(distinct(&narrow) < distinct(&wide), "{narrow}\n---\n{wide}");
    let out = microgpt(d, &["sample", "--weights", "w.bin", "--top-p", "0"]);
    assert!(text(&out.stderr).contains("--top-p must be above 0"));
}
