//! The client and the example against a live coordinator and agent, each a separate OS
//! process started from the repository's Python installation ($FRAMEFLEET_PYTHON, else
//! ../../.venv/bin/python relative to this crate). Without the default one the tests pass
//! vacuously and print SKIPPED with the reason; a FRAMEFLEET_PYTHON that does not exist fails.
//! The coordinator serves TLS with client tokens and certified agents, as on a network.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use framefleet::v1::{JobState, Template};
use framefleet::{Client, ConnectOptions, Error, Options, Param, new_job};

#[allow(dead_code)]
#[path = "../examples/submit.rs"]
mod submit_example;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A tiny template: the background follows the seek time, the text a parameter.
const CARD_HTML: &str = r#"<!doctype html>
<html><body style="margin:0">
<div id="card" style="width:64px;height:64px;font:10px sans-serif;color:#fff"></div>
<script>
  framefleet.onParams(p => { document.getElementById("card").textContent = p.name; });
  framefleet.onSeek(t => {
    document.getElementById("card").style.background = "hsl(" + Math.round(t * 720) + ",70%,40%)";
  });
</script>
</body></html>"#;

struct Farm {
    address: String,
    root: PathBuf,
    /// The CA of the coordinator's certificate, and a submit token of tenant "rust".
    ca: PathBuf,
    token: String,
    children: Vec<(String, Child)>,
}

impl Farm {
    /// A coordinator on a free loopback port with SQLite in a temporary directory, TLS, client
    /// tokens and agent certificates, and one certified agent with one slot. None when there is
    /// no Python to start them with.
    fn start(name: &str) -> Option<Farm> {
        let python = match std::env::var_os("FRAMEFLEET_PYTHON") {
            Some(p) => {
                let p = PathBuf::from(p);
                assert!(
                    p.exists(),
                    "FRAMEFLEET_PYTHON={} does not exist",
                    p.display()
                );
                p
            }
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        };
        if !python.exists() {
            eprintln!(
                "SKIPPED: no Python with framefleet at {}: run `make setup` at the repository \
                 root, or set FRAMEFLEET_PYTHON, to test against a live coordinator and agent",
                python.display()
            );
            return None;
        }
        let root =
            std::env::temp_dir().join(format!("framefleet-rust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let certs = root.join("certs");
        let tokens = root.join("tokens.json");
        let agent_id = format!("rust-{name}");
        let certs_arg = certs.to_str().unwrap();
        framefleet(&python, &["certs", "ca", "--dir", certs_arg]);
        framefleet(
            &python,
            &[
                "certs",
                "server",
                "coordinator",
                "--host",
                "127.0.0.1",
                "--dir",
                certs_arg,
            ],
        );
        framefleet(&python, &["certs", "agent", &agent_id, "--dir", certs_arg]);
        let token = framefleet(
            &python,
            &[
                "token",
                "add",
                "rust",
                "--role",
                "submit",
                "--tokens",
                tokens.to_str().unwrap(),
            ],
        );
        let mut farm = Farm {
            address: String::new(),
            ca: certs.join("ca.pem"),
            token,
            root,
            children: Vec::new(),
        };

        let store = format!("sqlite:///{}", farm.root.join("jobs.db").display());
        let out = farm.root.join("out");
        let mut coordinator = farm.command(&python, "coordinator");
        coordinator.args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--agent-listen",
            "127.0.0.1:0",
        ]);
        coordinator
            .arg("--out")
            .arg(&out)
            .arg("--tls-cert")
            .arg(certs.join("coordinator.pem"))
            .arg("--tls-key")
            .arg(certs.join("coordinator.key"))
            .arg("--tokens")
            .arg(&tokens)
            .arg("--agent-ca")
            .arg(&farm.ca)
            .stdout(Stdio::piped());
        let mut child = coordinator.spawn().expect("starting the coordinator");
        let stdout = child.stdout.take().unwrap();
        farm.children.push(("coordinator".into(), child));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..2 {
                let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
            }
            for _ in lines {} // never let a full pipe block the coordinator
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let address = |marker: &str| {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(wait).unwrap_or_default();
            match line.split_once(marker) {
                Some((_, address)) => address.trim().to_string(),
                None => panic!("coordinator did not start: {line:?}\n{}", farm.logs()),
            }
        };
        let clients = address("listening on ");
        let agents = address("agents on ");
        farm.address = clients;

        let mut agent = farm.command(&python, "agent");
        agent.args([
            "agent",
            "--coordinator",
            &agents,
            "--slots",
            "1",
            "--tls-ca",
        ]);
        agent
            .arg(&farm.ca)
            .arg("--tls-cert")
            .arg(certs.join(format!("{agent_id}.pem")))
            .arg("--tls-key")
            .arg(certs.join(format!("{agent_id}.key")));
        let child = agent.spawn().expect("starting the agent");
        farm.children.push(("agent".into(), child));
        Some(farm)
    }

    /// TLS trusting the farm's CA, with its token.
    fn settings(&self) -> ConnectOptions {
        ConnectOptions {
            token: Some(self.token.clone()),
            ..Default::default()
        }
        .ca_file(&self.ca)
        .expect("the farm's CA")
    }

    fn command(&self, python: &Path, name: &str) -> Command {
        let log = std::fs::File::create(self.root.join(format!("{name}.log"))).unwrap();
        let mut command = Command::new(python);
        command
            .args(["-m", "framefleet"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        command
    }

    fn logs(&self) -> String {
        let mut logs = String::new();
        for (name, _) in &self.children {
            let text =
                std::fs::read_to_string(self.root.join(format!("{name}.log"))).unwrap_or_default();
            let tail = &text[text.len().saturating_sub(4000)..];
            logs += &format!("--- {name}\n{tail}\n");
        }
        logs
    }
}

impl Drop for Farm {
    /// SIGTERM, newest first (the agent drains before the coordinator goes); SIGKILL after 15 s.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for (_, child) in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs a short framefleet command and returns its stdout, trimmed.
fn framefleet(python: &Path, args: &[&str]) -> String {
    let output = Command::new(python)
        .args(["-m", "framefleet"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running framefleet");
    assert!(
        output.status.success(),
        "framefleet {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn tiny(frames: u32, duration: f64) -> Options {
    Options {
        width: 64,
        height: 64,
        fps: 10,
        frames,
        duration,
        ..Default::default()
    }
}

fn file_size(url: &str) -> u64 {
    let path = url
        .strip_prefix("file://")
        .unwrap_or_else(|| panic!("{url} is not a file:// URL"));
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("output {path}: {e}"))
        .len()
}

#[tokio::test]
async fn submit_watch_wait_cancel() {
    let Some(farm) = Farm::start("client") else {
        return;
    };
    let client = Client::connect_with(&farm.address, farm.settings())
        .await
        .expect("connect over TLS");

    // Submit, watch the progress stream, see it succeed with a file:// output.
    let mut options = tiny(5, 0.0);
    options.labels.insert("client".into(), "rust".into());
    let spec = new_job(
        Template {
            html: CARD_HTML.into(),
            ..Default::default()
        },
        [("name", Param::from("Rust")), ("referrals", 12.into())],
        options,
    );
    let job = client.submit(spec).await.expect("submit");
    assert!(!job.id.is_empty() && job.content_key.len() == 64, "{job:?}");
    let mut progress = Vec::new();
    let done = client
        .watch(&job.id, |u| {
            let j = u.job.as_ref().unwrap();
            println!(
                "{:?} {}/{} frames {:.1} fps",
                j.state(),
                j.frames_done,
                j.frames_total,
                u.fps
            );
            progress.push((j.state(), j.frames_done));
        })
        .await
        .expect("watch");
    assert!(!progress.is_empty(), "watch delivered no update");
    assert!(
        progress.windows(2).all(|w| w[0].1 <= w[1].1),
        "progress went backwards: {progress:?}"
    );
    assert_eq!(
        done.state(),
        JobState::Succeeded,
        "{} {}",
        done.error_class,
        done.error_message
    );
    assert_eq!((done.frames_done, done.frames_total), (5, 5));
    let size = file_size(&done.output_url);
    assert!(
        size > 0 && size == done.output_bytes,
        "{size} bytes, the job says {}",
        done.output_bytes
    );

    let stored = client.get(&job.id).await.expect("get");
    let spec = stored.spec.expect("spec");
    assert_eq!(spec.labels["client"], "rust");
    assert!(spec.params.unwrap().fields.contains_key("name"));
    let waited = client.wait(&job.id).await.expect("wait");
    assert_eq!(waited.output_url, done.output_url);

    // Refused with its error class.
    let odd = new_job(
        Template {
            html: CARD_HTML.into(),
            ..Default::default()
        },
        [] as [(&str, Param); 0],
        Options {
            width: 63,
            ..tiny(5, 0.0)
        },
    );
    let refusal = client
        .submit(odd)
        .await
        .expect_err("an odd width was accepted");
    assert_eq!(refusal.class(), Some("INVALID_JOB"), "{refusal}");
    assert!(matches!(
        client.get("no-such-job").await,
        Err(Error::Status(_))
    ));

    // Cancel a job too long to finish first; wait reports it.
    let long = new_job(
        Template {
            html: CARD_HTML.into(),
            ..Default::default()
        },
        [("name", Param::from("cancel me"))],
        tiny(0, 600.0),
    );
    let job = client.submit(long).await.expect("submit");
    let cancelled = client.cancel(&job.id).await.expect("cancel");
    assert_eq!(cancelled.state(), JobState::Cancelled);
    match client.wait(&job.id).await {
        Err(Error::JobFailed(job)) => assert_eq!(job.state(), JobState::Cancelled),
        other => panic!("wait on a cancelled job: {other:?}"),
    }
}

#[tokio::test]
async fn refused_without_a_valid_token() {
    let Some(farm) = Farm::start("auth") else {
        return;
    };
    let spec = || {
        new_job(
            Template {
                html: CARD_HTML.into(),
                ..Default::default()
            },
            [("name", Param::from("no token"))],
            tiny(5, 0.0),
        )
    };
    for token in [None, Some("fft_wrong".to_string())] {
        let settings = ConnectOptions {
            token: token.clone(),
            ..farm.settings()
        };
        let client = Client::connect_with(&farm.address, settings)
            .await
            .expect("connect over TLS");
        match client.submit(spec()).await {
            Err(Error::Status(s)) | Err(Error::Refused { status: s, .. })
                if s.code() == tonic::Code::Unauthenticated => {}
            other => panic!("submit with token {token:?}: {other:?}"),
        }
    }
    // Plaintext to a TLS listener never reaches the service.
    let plain = Client::connect(&farm.address).await;
    if let Ok(client) = plain {
        assert!(
            client.submit(spec()).await.is_err(),
            "plaintext submit accepted"
        );
    }
    // The same farm takes the job with the token.
    let client = Client::connect_with(&farm.address, farm.settings())
        .await
        .expect("connect over TLS");
    let job = client.submit(spec()).await.expect("submit with the token");
    assert_eq!(client.wait(&job.id).await.expect("wait").frames_done, 5);
}

#[tokio::test]
async fn the_submit_example() {
    let Some(farm) = Farm::start("example") else {
        return;
    };
    let dir = farm.root.join("template");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("card.html"),
        r#"<!doctype html><html><head><link rel="stylesheet" href="style.css"></head>
<body><div id="name"></div><script>
framefleet.onParams(p => { document.getElementById("name").textContent = p.name + " " + p.count; });
</script></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("style.css"),
        "body { margin: 0; background: #123; color: #fff }",
    )
    .unwrap();

    let template = dir.join("card.html").display().to_string();
    let (ca, token) = (farm.ca.display().to_string(), farm.token.clone());
    let args: Vec<String> = [
        "--coordinator",
        &farm.address,
        "--tls-ca",
        &ca,
        "--token",
        &token,
        "--param",
        "name=Ada",
        "--param",
        "count=12",
        "--width",
        "64",
        "--height",
        "64",
        "--fps",
        "10",
        "--frames",
        "5",
        &template,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = submit_example::run(&args, &mut out, &mut err).await;
    let (out, err) = (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.trim().lines().collect();
    assert!(lines[0].starts_with("submitted "), "{out}");
    assert!(out.contains("succeeded 5/5 frames"), "{out}");
    assert!(file_size(lines[lines.len() - 1]) > 0);

    let args: Vec<String> = [
        "--coordinator",
        &farm.address,
        "--tls-ca",
        &ca,
        "--token",
        &token,
        "--width",
        "63",
        "--frames",
        "5",
        &template,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = submit_example::run(&args, &mut out, &mut err).await;
    let err = String::from_utf8(err).unwrap();
    assert!(
        code == 2 && err.contains("INVALID_JOB"),
        "odd width: exit {code}, {err}"
    );
}
