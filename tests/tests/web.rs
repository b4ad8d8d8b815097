//! The page in real headless Chromium, served on localhost: it trains microgpt's model
//! in WebAssembly, the loss falls, it samples the host's very names from the same
//! weights, and its attention view renders. A screenshot is kept in
//! `target/web-e2e/page.png`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use microgpt_tests::{microgpt, root, web_available};

/// A static file server that ends with the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &std::path::Path) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 serves the page");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), format!("http://127.0.0.1:{port}/"))
}

#[test]
fn the_page_trains_samples_and_shows_attention_in_chromium() {
    if !web_available() {
        return;
    }
    let site = tempfile::tempdir().unwrap();
    let build = Command::new(root().join("host/web/build.sh"))
        .arg(site.path())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = std::fs::metadata(site.path().join("microgpt_web.wasm"))
        .unwrap()
        .len();

    let (_server, url) = serve(site.path());
    let shots = root().join("target/web-e2e");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("page.png");
    let out = Command::new("node")
        .arg(root().join("host/web/e2e.mjs"))
        .arg(&url)
        .arg(root().join("data/micro.bin"))
        .arg(&shot)
        .output()
        .unwrap();
    let (log, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the page's checks failed: {err}\n{log}"
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot"
    );

    let value = |key: &str| -> f64 {
        log.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {log}"))
    };
    eprintln!(
        "the page: 1000 steps in {} ms, loss {}, val {}, {wasm} bytes of WebAssembly; screenshot {}",
        value("train_ms "),
        value("loss "),
        value("val "),
        shot.display()
    );
    let page: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("name "))
        .collect();
    let host = microgpt(
        root(),
        &[
            "sample",
            "--weights",
            "data/micro.bin",
            "--seed",
            "42",
            "--count",
            "20",
        ],
    );
    assert!(host.status.success());
    let host = String::from_utf8_lossy(&host.stdout);
    assert_eq!(
        page,
        host.lines().collect::<Vec<_>>(),
        "the page's names are the host's"
    );
}
