//! A small client for a framefleet coordinator's JobService.
//!
//! ```no_run
//! # async fn run() -> Result<(), framefleet::Error> {
//! let client = framefleet::Client::connect("127.0.0.1:7070").await?;
//! let spec = framefleet::template_job("card.html", [("name", "Ada".into())], framefleet::Options::seconds(12.0))?;
//! let job = client.submit(spec).await?;
//! let done = client.wait(&job.id).await?; // Error::JobFailed unless it succeeded
//! println!("{}", done.output_url);
//! # Ok(()) }
//! ```
//!
//! Against a coordinator with TLS (`--tls-cert`) and client tokens (`--tokens`), trust its CA
//! and send a token (`framefleet token add`):
//!
//! ```no_run
//! # async fn run() -> Result<(), framefleet::Error> {
//! let settings = framefleet::ConnectOptions {
//!     token: Some("fft_...".into()),
//!     ..Default::default()
//! }
//! .ca_file("certs/ca.pem")?;
//! let client = framefleet::Client::connect_with("farm.example:7070", settings).await?;
//! # Ok(()) }
//! ```
//!
//! The stubs are generated from `proto/framefleet/v1/framefleet.proto` at build time
//! (`build.rs`) and live in [`v1`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use prost::Message;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The generated messages and the JobService client stub.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("framefleet.v1");
}

use v1::job_service_client::JobServiceClient;
use v1::{
    CancelJobRequest, ErrorClass, ErrorDetail, GetJobRequest, Job, JobSpec, JobState,
    OutputSettings, SubmitJobRequest, Template, WatchJobRequest, WatchJobResponse,
};

/// The largest gRPC message sent or received: a job carries its whole template bundle.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The generated stub over a channel, sending the client token (if any) with every call.
pub type Stub = JobServiceClient<InterceptedService<Channel, Bearer>>;

/// A client for one coordinator. Cloning is cheap and clones share the connection.
#[derive(Clone, Debug)]
pub struct Client {
    jobs: Stub,
}

/// How to reach a coordinator; the default is plaintext without a token, for a loopback
/// coordinator without `--tls-cert` or `--tokens`.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// PEM of the CA that signed the coordinator's certificate (`framefleet certs ca`; the other
    /// clients read its path from `FRAMEFLEET_TLS_CA`). Set: connect over TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the coordinator's certificate must carry; by default the target's host.
    pub domain: Option<String>,
    /// A client token (`framefleet token add`; `FRAMEFLEET_TOKEN` for the other clients), sent
    /// as `authorization: Bearer TOKEN` with every call. Use it with TLS: over plaintext anyone
    /// on the path can read it.
    pub token: Option<String>,
}

impl ConnectOptions {
    /// These options, trusting the CA in the PEM file at `path` (so connecting over TLS).
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| Error::Settings(format!("TLS CA {}: {e}", path.display())))?;
        self.ca_pem = Some(pem);
        Ok(self)
    }
}

/// The interceptor that puts the client token on each call.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// `authorization: Bearer TOKEN`; none for `None` or an empty token.
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        match token.filter(|t| !t.is_empty()) {
            None => Ok(Bearer(None)),
            Some(token) => MetadataValue::try_from(format!("Bearer {token}"))
                .map(|value| Bearer(Some(value)))
                .map_err(|_| Error::Settings("the token is not printable ASCII".to_string())),
        }
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Client {
    /// Connects to the coordinator at `target`: `host:port` (plaintext, like the coordinator's
    /// own listener) or a full `http://host:port` URI.
    pub async fn connect(target: impl AsRef<str>) -> Result<Self, Error> {
        Self::connect_with(target, ConnectOptions::default()).await
    }

    /// Connects to the coordinator at `target` (`host:port` or a full URI) with TLS and a token
    /// as `options` say.
    pub async fn connect_with(
        target: impl AsRef<str>,
        options: ConnectOptions,
    ) -> Result<Self, Error> {
        let target = target.as_ref();
        let bearer = Bearer::new(options.token.as_deref())?;
        let uri = match (target.contains("://"), &options.ca_pem) {
            (true, _) => target.to_string(),
            (false, Some(_)) => format!("https://{target}"),
            (false, None) => format!("http://{target}"),
        };
        let mut endpoint = Endpoint::from_shared(uri).map_err(Error::Transport)?;
        if let Some(pem) = options.ca_pem {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
            if let Some(domain) = options.domain {
                tls = tls.domain_name(domain);
            }
            endpoint = endpoint.tls_config(tls).map_err(Error::Transport)?;
        }
        let channel = endpoint.connect().await.map_err(Error::Transport)?;
        Ok(Self::with_bearer(channel, bearer))
    }

    /// A client over a channel made elsewhere (timeouts, a lazy connection), without a token.
    pub fn from_channel(channel: Channel) -> Self {
        Self::with_bearer(channel, Bearer::default())
    }

    /// A client over a channel made elsewhere, sending `bearer`'s token with every call.
    pub fn with_bearer(channel: Channel, bearer: Bearer) -> Self {
        let jobs = JobServiceClient::with_interceptor(channel, bearer)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Self { jobs }
    }

    /// The generated stub, for calls this client does not wrap (ListJobs); it sends the token.
    pub fn stub(&self) -> Stub {
        self.jobs.clone()
    }

    /// Queues a job and returns its record (queued, or succeeded at once when the same output
    /// already exists). A refused job is [`Error::Refused`] with class `INVALID_JOB`.
    pub async fn submit(&self, spec: JobSpec) -> Result<Job, Error> {
        let request = SubmitJobRequest {
            spec: Some(spec),
            ..Default::default()
        };
        let response = self
            .jobs
            .clone()
            .submit_job(request)
            .await
            .map_err(translate)?;
        response.into_inner().job.ok_or_else(missing_job)
    }

    /// A job's current record.
    pub async fn get(&self, job_id: &str) -> Result<Job, Error> {
        let request = GetJobRequest {
            job_id: job_id.to_string(),
        };
        let response = self
            .jobs
            .clone()
            .get_job(request)
            .await
            .map_err(translate)?;
        response.into_inner().job.ok_or_else(missing_job)
    }

    /// Cancels a queued or running job and returns its record.
    pub async fn cancel(&self, job_id: &str) -> Result<Job, Error> {
        let request = CancelJobRequest {
            job_id: job_id.to_string(),
        };
        let response = self
            .jobs
            .clone()
            .cancel_job(request)
            .await
            .map_err(translate)?;
        response.into_inner().job.ok_or_else(missing_job)
    }

    /// Calls `progress` with each state change and progress update of a job, starting with its
    /// current state, until it reaches a final state; returns the last record seen.
    pub async fn watch<F>(&self, job_id: &str, mut progress: F) -> Result<Job, Error>
    where
        F: FnMut(&WatchJobResponse),
    {
        let request = WatchJobRequest {
            job_id: job_id.to_string(),
        };
        let mut stream = self
            .jobs
            .clone()
            .watch_job(request)
            .await
            .map_err(translate)?
            .into_inner();
        let mut last = None;
        while let Some(update) = stream.message().await.map_err(translate)? {
            progress(&update);
            last = update.job.or(last);
        }
        last.ok_or_else(missing_job)
    }

    /// Waits for the job to end and returns its final record; [`Error::JobFailed`] unless it
    /// succeeded.
    pub async fn wait(&self, job_id: &str) -> Result<Job, Error> {
        let mut job = self.watch(job_id, |_| {}).await?;
        if !is_final(job.state()) {
            // The stream ended early (the coordinator restarted, say): ask once more.
            job = self.get(job_id).await?;
        }
        if job.state() == JobState::Succeeded {
            Ok(job)
        } else {
            Err(Error::JobFailed(Box::new(job)))
        }
    }
}

/// Whether a job in this state will not change again.
pub fn is_final(state: JobState) -> bool {
    matches!(
        state,
        JobState::Succeeded | JobState::Failed | JobState::Cancelled
    )
}

/// A state without its prefix, lower case: "queued", "succeeded".
pub fn state_name(state: JobState) -> String {
    state
        .as_str_name()
        .trim_start_matches("JOB_STATE_")
        .to_lowercase()
}

/// What can go wrong.
#[derive(Debug)]
pub enum Error {
    /// The coordinator could not be reached.
    Transport(tonic::transport::Error),
    /// The coordinator refused the call with an error class, e.g. `INVALID_JOB` (read from the
    /// status details, see [`ErrorDetail`]).
    Refused {
        class: ErrorClass,
        message: String,
        status: Box<tonic::Status>,
    },
    /// Any other gRPC error (unknown job, unavailable, ...).
    Status(Box<tonic::Status>),
    /// The job ended failed or cancelled; its final record.
    JobFailed(Box<Job>),
    /// Reading a template or its assets.
    Template { path: String, error: std::io::Error },
    /// Unusable connection settings: an unreadable CA file, a token that is not ASCII.
    Settings(String),
}

impl Error {
    /// The error class: the refusal's, the failed job's, `TEMPLATE_NOT_FOUND`, or `None`.
    pub fn class(&self) -> Option<&str> {
        match self {
            Error::Refused { class, .. } => Some(class_name(*class)),
            Error::JobFailed(job) if job.error != 0 => Some(class_name(
                ErrorClass::try_from(job.error).unwrap_or(ErrorClass::Internal),
            )),
            // From a coordinator that predates the enum: the name alone.
            Error::JobFailed(job) if !job.error_class.is_empty() => Some(&job.error_class),
            Error::JobFailed(job) if job.state() == JobState::Cancelled => Some("CANCELLED"),
            Error::Template { .. } => Some("TEMPLATE_NOT_FOUND"),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport(e) => write!(f, "coordinator unreachable: {e}"),
            Error::Refused { class, message, .. } => {
                write!(f, "{}: {message}", class_name(*class))
            }
            Error::Status(s) => write!(f, "{}: {}", s.code(), s.message()),
            Error::JobFailed(job) => write!(
                f,
                "job {} {}: {}: {}",
                job.id,
                state_name(job.state()),
                self.class().unwrap_or("INTERNAL"),
                job.error_message
            ),
            Error::Template { path, error } => write!(f, "TEMPLATE_NOT_FOUND: {path}: {error}"),
            Error::Settings(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport(e) => Some(e),
            Error::Refused { status, .. } | Error::Status(status) => Some(status.as_ref()),
            Error::Template { error, .. } => Some(error),
            Error::JobFailed(_) | Error::Settings(_) => None,
        }
    }
}

/// An error class without its prefix: `INVALID_JOB`.
pub fn class_name(class: ErrorClass) -> &'static str {
    class.as_str_name().trim_start_matches("ERROR_CLASS_")
}

/// `google.rpc.Status`: the rich status a server puts in the `grpc-status-details-bin`
/// trailer, which tonic hands over as `Status::details()`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

const ERROR_DETAIL_TYPE: &str = "type.googleapis.com/framefleet.v1.ErrorDetail";

/// A refusal carries an [`ErrorDetail`] in its status details; anything else stays a status.
fn translate(status: tonic::Status) -> Error {
    let detail = RpcStatus::decode(status.details())
        .ok()
        .and_then(|rich| {
            rich.details
                .into_iter()
                .find(|d| d.type_url == ERROR_DETAIL_TYPE)
        })
        .and_then(|any| ErrorDetail::decode(any.value.as_slice()).ok());
    match detail {
        Some(detail) => Error::Refused {
            class: ErrorClass::try_from(detail.error_class).unwrap_or(ErrorClass::Internal),
            message: detail.message,
            status: Box::new(status),
        },
        None => Error::Status(Box::new(status)),
    }
}

fn missing_job() -> Error {
    Error::Status(Box::new(tonic::Status::internal(
        "the coordinator answered without a job",
    )))
}

/// A template parameter: JSON-like values, converted into a `google.protobuf.Struct`.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<Param>),
    Object(BTreeMap<String, Param>),
}

impl Param {
    /// A command-line value: a number, `true`, `false` or `null` as such, otherwise a string.
    pub fn parse(text: &str) -> Param {
        match text {
            "true" => Param::Bool(true),
            "false" => Param::Bool(false),
            "null" => Param::Null,
            _ => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => Param::Number(n),
                _ => Param::String(text.to_string()),
            },
        }
    }

    fn into_value(self) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match self {
            Param::Null => Kind::NullValue(0),
            Param::Bool(b) => Kind::BoolValue(b),
            Param::Number(n) => Kind::NumberValue(n),
            Param::String(s) => Kind::StringValue(s),
            Param::List(items) => Kind::ListValue(prost_types::ListValue {
                values: items.into_iter().map(Param::into_value).collect(),
            }),
            Param::Object(fields) => Kind::StructValue(to_struct(fields)),
        };
        prost_types::Value { kind: Some(kind) }
    }
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::String(s.to_string())
    }
}
impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::String(s)
    }
}
impl From<bool> for Param {
    fn from(b: bool) -> Self {
        Param::Bool(b)
    }
}
impl From<f64> for Param {
    fn from(n: f64) -> Self {
        Param::Number(n)
    }
}
impl From<i64> for Param {
    fn from(n: i64) -> Self {
        Param::Number(n as f64)
    }
}
impl From<i32> for Param {
    fn from(n: i32) -> Self {
        Param::Number(n.into())
    }
}
impl From<u32> for Param {
    fn from(n: u32) -> Self {
        Param::Number(n.into())
    }
}
impl<T: Into<Param>> From<Vec<T>> for Param {
    fn from(items: Vec<T>) -> Self {
        Param::List(items.into_iter().map(Into::into).collect())
    }
}

fn to_struct<K: Into<String>>(params: impl IntoIterator<Item = (K, Param)>) -> prost_types::Struct {
    prost_types::Struct {
        fields: params
            .into_iter()
            .map(|(k, v)| (k.into(), v.into_value()))
            .collect(),
    }
}

/// A job's output settings and scheduling; zero values take the coordinator's defaults
/// (1280x720, 30 fps, CRF 23, preset veryfast, the coordinator's destination).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Length in seconds; ignored when `frames` is set.
    pub duration: f64,
    pub frames: u32,
    pub crf: Option<u32>,
    pub preset: String,
    /// A local directory (path or file:// URL) or s3://bucket/prefix.
    pub destination: String,
    pub priority: i32,
    pub max_attempts: u32,
    pub labels: HashMap<String, String>,
    /// Render even if an output for this content and destination already exists.
    pub force: bool,
    /// A readable output name besides the content-addressed one, e.g. "{row_key}.mp4" or
    /// "{batch}/{name}.mp4" (fields: row_key, batch, batch_id, key, or a parameter).
    pub name: String,
    /// Split an MP4 into this many chunks rendered at once on free slots (1: never split; 0:
    /// the coordinator decides by length and free slots).
    pub chunks: u32,
    /// Split into chunks of this many frames (rounded up to whole two-second segments).
    pub chunk_frames: u32,
}

impl Options {
    /// Defaults, `seconds` long.
    pub fn seconds(seconds: f64) -> Self {
        Options {
            duration: seconds,
            ..Default::default()
        }
    }
}

fn given(value: u32) -> Option<u32> {
    (value != 0).then_some(value)
}

/// A job spec for a template, its parameters and options.
// The struct update keeps this building when the proto gains a JobSpec field.
#[allow(clippy::needless_update)]
pub fn new_job<K: Into<String>>(
    template: Template,
    params: impl IntoIterator<Item = (K, Param)>,
    options: Options,
) -> JobSpec {
    JobSpec {
        source: Some(v1::job_spec::Source::Template(template)),
        params: Some(to_struct(params)),
        output: Some(OutputSettings {
            // Options' zeros mean "the default": left unset, since a zero given is refused.
            width: given(options.width),
            height: given(options.height),
            fps: given(options.fps),
            duration_seconds: (options.duration != 0.0).then_some(options.duration),
            frames: given(options.frames),
            codec: "h264".to_string(),
            crf: options.crf,
            preset: options.preset,
            ..Default::default()
        }),
        destination: options.destination,
        priority: options.priority,
        max_attempts: options.max_attempts,
        labels: options.labels,
        force: options.force,
        output_name: options.name,
        chunks: options.chunks,
        chunk_frames: options.chunk_frames,
        ..Default::default()
    }
}

/// [`new_job`] for a template file and the assets beside it.
pub fn template_job<K: Into<String>>(
    path: impl AsRef<Path>,
    params: impl IntoIterator<Item = (K, Param)>,
    options: Options,
) -> Result<JobSpec, Error> {
    Ok(new_job(load_template(path)?, params, options))
}

/// Files beside a template that are bundled with it.
const ASSET_SUFFIXES: &[&str] = &[
    "css", "js", "mjs", "json", "woff", "woff2", "ttf", "otf", "png", "jpg", "jpeg", "gif", "webp",
    "svg", "avif", "mp4", "webm", "mp3", "wav", "ogg",
];

/// Reads an HTML template and the asset files beside it (fonts, images, scripts, styles: the
/// page is served from these and never reaches the network). Hidden files and folders are
/// left out.
pub fn load_template(path: impl AsRef<Path>) -> Result<Template, Error> {
    let path = path.as_ref();
    let error = |error| Error::Template {
        path: path.display().to_string(),
        error,
    };
    let html = std::fs::read_to_string(path).map_err(error)?;
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut assets = HashMap::new();
    let this = path.canonicalize().map_err(error)?;
    bundle(root, root, &this, &mut assets).map_err(error)?;
    Ok(Template { html, assets })
}

fn bundle(
    root: &Path,
    dir: &Path,
    template: &Path,
    assets: &mut HashMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            bundle(root, &path, template, assets)?;
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|e| ASSET_SUFFIXES.contains(&&*e.to_string_lossy()))
            && path.canonicalize()? != template
        {
            let relative = path.strip_prefix(root).expect("walked from root");
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>();
            assets.insert(name.join("/"), std::fs::read(&path)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_become_a_struct() {
        let spec = new_job(
            Template::default(),
            [
                ("name", Param::from("Ada")),
                ("n", 12.into()),
                ("tags", vec!["a", "b"].into()),
            ],
            Options::seconds(2.0),
        );
        let fields = spec.params.unwrap().fields;
        assert_eq!(fields.len(), 3);
        assert!(matches!(
            fields["n"].kind,
            Some(prost_types::value::Kind::NumberValue(n)) if n == 12.0
        ));
    }

    #[test]
    fn parse_command_line_values() {
        assert_eq!(Param::parse("12"), Param::Number(12.0));
        assert_eq!(Param::parse("true"), Param::Bool(true));
        assert_eq!(Param::parse("Ada"), Param::String("Ada".into()));
        assert_eq!(Param::parse("NaN"), Param::String("NaN".into()));
    }

    #[test]
    fn refusals_read_their_error_class_from_the_details() {
        let detail = ErrorDetail {
            error_class: ErrorClass::OutputError as i32,
            message: "no disk".into(),
        };
        let rich = RpcStatus {
            code: tonic::Code::FailedPrecondition as i32,
            message: "OUTPUT_ERROR: no disk".into(),
            details: vec![prost_types::Any {
                type_url: ERROR_DETAIL_TYPE.into(),
                value: detail.encode_to_vec(),
            }],
        };
        let e = translate(tonic::Status::with_details(
            tonic::Code::FailedPrecondition,
            "OUTPUT_ERROR: no disk",
            rich.encode_to_vec().into(),
        ));
        assert_eq!(e.class(), Some("OUTPUT_ERROR"));
        assert_eq!(e.to_string(), "OUTPUT_ERROR: no disk");
        // The message text alone is never parsed.
        let e = translate(tonic::Status::invalid_argument(
            "INVALID_JOB: width 63 is odd",
        ));
        assert!(matches!(e, Error::Status(_)));
    }

    #[test]
    fn failed_jobs_have_their_class() {
        let job = Job {
            state: JobState::Failed as i32,
            error: ErrorClass::TemplateScriptError as i32,
            ..Default::default()
        };
        assert_eq!(
            Error::JobFailed(Box::new(job)).class(),
            Some("TEMPLATE_SCRIPT_ERROR")
        );
        let legacy = Job {
            state: JobState::Failed as i32,
            error_class: "OUTPUT_ERROR".into(),
            ..Default::default()
        };
        assert_eq!(
            Error::JobFailed(Box::new(legacy)).class(),
            Some("OUTPUT_ERROR")
        );
    }
}
