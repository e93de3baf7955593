//! Renders an HTML template on a framefleet farm: submits it with its parameters, prints
//! progress while the job runs, then the output URL.
//!
//! ```sh
//! cargo run --example submit -- --coordinator 127.0.0.1:7070 --param name=Ada --param referrals=12 \
//!     --width 1280 --height 720 --fps 30 --duration 12 card.html
//! ```
//!
//! Against a coordinator with TLS and client tokens, `--tls-ca ca.pem` (default
//! `$FRAMEFLEET_TLS_CA`) trusts its CA and `--token` (default `$FRAMEFLEET_TOKEN`) sends a token.
//!
//! `--param` values are numbers, `true`, `false` or `null` when they parse as such, otherwise
//! strings. Exit status: 0 succeeded, 1 the job failed or was cancelled, 2 bad input,
//! 3 coordinator unreachable.

use std::io::Write;

use framefleet::{Client, ConnectOptions, Error, Options, Param, state_name, template_job};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = run(&args, &mut std::io::stdout(), &mut std::io::stderr()).await;
    std::process::exit(code);
}

const USAGE: &str = "usage: submit [--coordinator HOST:PORT] [--tls-ca CA.pem] [--token TOKEN] \
[--param KEY=VALUE]... [--width N] \
[--height N] [--fps N] [--duration SECONDS | --frames N] [--out DIR] TEMPLATE.html";

struct Args {
    coordinator: String,
    tls_ca: String,
    token: String,
    params: Vec<(String, Param)>,
    options: Options,
    template: String,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        coordinator: std::env::var("FRAMEFLEET_COORDINATOR")
            .unwrap_or_else(|_| "127.0.0.1:7070".to_string()),
        tls_ca: std::env::var("FRAMEFLEET_TLS_CA").unwrap_or_default(),
        token: std::env::var("FRAMEFLEET_TOKEN").unwrap_or_default(),
        params: Vec::new(),
        options: Options {
            width: 1280,
            height: 720,
            fps: 30,
            ..Default::default()
        },
        template: String::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            if !parsed.template.is_empty() {
                return Err(format!("one template only, not {arg:?}"));
            }
            parsed.template = arg.clone();
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let number = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("{arg} {value:?} is not a count"))
        };
        match arg.as_str() {
            "--coordinator" => parsed.coordinator = value.clone(),
            "--param" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or(format!("{value:?} is not KEY=VALUE"))?;
                parsed.params.push((k.to_string(), Param::parse(v)));
            }
            "--tls-ca" => parsed.tls_ca = value.clone(),
            "--token" => parsed.token = value.clone(),
            "--width" => parsed.options.width = number()?,
            "--height" => parsed.options.height = number()?,
            "--fps" => parsed.options.fps = number()?,
            "--frames" => parsed.options.frames = number()?,
            "--duration" => {
                parsed.options.duration = value
                    .parse()
                    .map_err(|_| format!("--duration {value:?} is not seconds"))?
            }
            "--out" => parsed.options.destination = value.clone(),
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    if parsed.template.is_empty() {
        return Err("no template".to_string());
    }
    if parsed.options.duration == 0.0 && parsed.options.frames == 0 {
        parsed.options.duration = 12.0;
    }
    Ok(parsed)
}

/// The whole example; returns the exit status.
pub async fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let args = match parse(args) {
        Ok(args) => args,
        Err(message) => {
            let _ = writeln!(err, "error: {message}\n{USAGE}");
            return 2;
        }
    };
    match submit(args, out).await {
        Ok(url) => {
            let _ = writeln!(out, "{url}");
            0
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            match e {
                Error::Refused { .. } | Error::Template { .. } | Error::Settings(_) => 2,
                Error::Transport(_) => 3,
                Error::Status(s) if s.code() == tonic::Code::Unavailable => 3,
                _ => 1,
            }
        }
    }
}

async fn submit(args: Args, out: &mut dyn Write) -> Result<String, Error> {
    let spec = template_job(&args.template, args.params, args.options)?;
    let mut settings = ConnectOptions {
        token: Some(args.token),
        ..Default::default()
    };
    if !args.tls_ca.is_empty() {
        settings = settings.ca_file(&args.tls_ca)?;
    }
    let client = Client::connect_with(&args.coordinator, settings).await?;
    let job = client.submit(spec).await?;
    let _ = writeln!(out, "submitted {}", job.id);
    let done = client
        .watch(&job.id, |update| {
            if let Some(j) = &update.job {
                let _ = writeln!(
                    out,
                    "{} {}/{} frames {:.1} fps",
                    state_name(j.state()),
                    j.frames_done,
                    j.frames_total,
                    update.fps
                );
            }
        })
        .await?;
    if done.state() != framefleet::v1::JobState::Succeeded {
        return Err(Error::JobFailed(Box::new(done)));
    }
    Ok(done.output_url)
}
