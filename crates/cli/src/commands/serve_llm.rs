//! `rdbench serve-llm`: an OpenAI-compatible chat server for a GGUF model or rdbench's own tiny
//! code model (rdbench-llm, rdbench-code-model). The flags become a [`ServeLlmConfig`] before
//! anything loads; the model, the API and the server are the crates' (docs/serve-llm.md,
//! docs/code-model.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use rdbench_core::{Error, Result};
use rdbench_llm::{GgufLlama, Listen, LlmError, ServerConfig};

use super::Context;

/// The flags as given.
#[derive(Debug, clap::Args)]
pub struct ServeLlmArgs {
    /// The model: a llama-architecture GGUF file (scripts/fetch-smollm2.sh fetches SmolLM2).
    #[arg(long)]
    pub gguf: Option<PathBuf>,
    /// The model: a folder of rdbench's tiny code model (docs/code-model.md), instead of --gguf.
    #[arg(long, value_name = "DIR")]
    pub code_model: Option<PathBuf>,
    /// The model name requests must give [default: the GGUF's general.name, or
    /// rdbench-code-tiny].
    #[arg(long)]
    pub model_name: Option<String>,
    /// Serve HTTP on this TCP address, e.g. 127.0.0.1:8000 (port 0: any free port).
    #[arg(long)]
    pub listen: Option<String>,
    // Not `--socket`: that is the global flag (and $RDBENCH_SOCKET) naming the scoring
    // service's socket, whose value clap would hand to this command too.
    /// Serve HTTP on this Unix socket instead.
    #[arg(long, value_name = "PATH")]
    pub unix_socket: Option<PathBuf>,
    /// Threads for the model's kernels [default: candle's, one per physical core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Largest request body, in bytes (413 beyond).
    #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Largest `n` (choices per request).
    #[arg(long, default_value_t = ServerConfig::DEFAULT_MAX_N)]
    pub max_n: usize,
}

/// Which model to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Gguf(PathBuf),
    CodeModel(PathBuf),
}

/// The validated flags.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeLlmConfig {
    pub model: ModelSource,
    pub model_name: Option<String>,
    pub listen: Listen,
    pub threads: Option<usize>,
    pub max_body_bytes: usize,
    pub max_n: usize,
}

impl ServeLlmArgs {
    pub fn validate(&self) -> Result<ServeLlmConfig> {
        let listen = match (&self.listen, &self.unix_socket) {
            (Some(addr), None) => Listen::Tcp(addr.parse::<SocketAddr>().map_err(|e| {
                Error::Usage(format!(
                    "--listen {addr}: not an address like 127.0.0.1:8000 ({e})"
                ))
            })?),
            (None, Some(path)) => Listen::Unix(path.clone()),
            _ => {
                return Err(Error::Usage(
                    "serve-llm: give exactly one of --listen ADDR and --unix-socket PATH".into(),
                ))
            }
        };
        let model = match (&self.gguf, &self.code_model) {
            (Some(gguf), None) => {
                if !gguf.is_file() {
                    return Err(Error::Usage(format!(
                        "--gguf {}: no such file (scripts/fetch-smollm2.sh fetches SmolLM2)",
                        gguf.display()
                    )));
                }
                ModelSource::Gguf(gguf.clone())
            }
            (None, Some(dir)) => {
                if !dir.is_dir() {
                    return Err(Error::Usage(format!(
                        "--code-model {}: no such folder",
                        dir.display()
                    )));
                }
                ModelSource::CodeModel(dir.clone())
            }
            _ => {
                return Err(Error::Usage(
                    "serve-llm: give exactly one of --gguf PATH and --code-model DIR".into(),
                ))
            }
        };
        if self.threads == Some(0) {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        if self
            .model_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(Error::Usage("--model-name must not be empty".into()));
        }
        if self.max_n == 0 || self.max_body_bytes < 1024 {
            return Err(Error::Usage(
                "--max-n must be at least 1 and --max-body-bytes at least 1024".into(),
            ));
        }
        Ok(ServeLlmConfig {
            model,
            model_name: self.model_name.clone(),
            listen,
            threads: self.threads,
            max_body_bytes: self.max_body_bytes,
            max_n: self.max_n,
        })
    }
}

pub fn serve_llm(ctx: &Context, args: &ServeLlmArgs) -> Result<i32> {
    let config = args.validate()?;
    if let Some(threads) = config.threads {
        // Before the model loads: candle reads the count once.
        rdbench_llm::set_threads(threads);
    }
    let server = |default_name: &str| {
        let mut server = ServerConfig::new(config.model_name.as_deref().unwrap_or(default_name));
        server.max_body_bytes = config.max_body_bytes;
        server.max_n = config.max_n;
        server
    };
    let kernels = if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "AVX2+FMA"
    } else {
        "no AVX2+FMA: slow, see `rdbench doctor`"
    };
    let on_ready = |name: String| {
        move |addr: String| {
            warn!(
                ctx,
                "rdbench serve-llm: serving `{name}` on {addr} ({kernels})"
            );
        }
    };
    match &config.model {
        ModelSource::Gguf(path) => {
            let model = GgufLlama::load(path).map_err(from_llm)?;
            let server = server(model.name());
            let ready = on_ready(server.model_name.clone());
            rdbench_llm::server::run(model, &server, &config.listen, ready).map_err(from_llm)?;
        }
        ModelSource::CodeModel(dir) => {
            let model = rdbench_code_model::CodeModel::load(dir).map_err(|e| match e {
                rdbench_code_model::CodeModelError::Io { path, source } => Error::io(path, source),
                rdbench_code_model::CodeModelError::BadModel { path, message } => {
                    Error::bad_input(path, message)
                }
                e => Error::Internal(e.to_string()),
            })?;
            let server = server(rdbench_code_model::MODEL_NAME);
            let ready = on_ready(server.model_name.clone());
            rdbench_llm::server::run(model, &server, &config.listen, ready).map_err(from_llm)?;
        }
    }
    Ok(0)
}

/// The model's errors as rdbench's: a file that cannot be read or run is bad input, a socket
/// that cannot be served the environment's fault.
fn from_llm(e: LlmError) -> Error {
    match e {
        LlmError::Io { path, source } => Error::io(path, source),
        LlmError::BadModel { path, message } => Error::bad_input(path, message),
        e @ LlmError::Serve { .. } => Error::Environment(e.to_string()),
        e => Error::Internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> ServeLlmArgs {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: ServeLlmArgs,
        }
        let mut all = vec!["x"];
        all.extend(flags);
        Wrap::parse_from(all).args
    }

    #[test]
    fn flags_are_validated_before_anything_runs() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let gguf = file.path().to_str().unwrap();
        let ok = args(&["--gguf", gguf, "--listen", "127.0.0.1:0", "--threads", "2"])
            .validate()
            .unwrap();
        assert_eq!(ok.listen, Listen::Tcp("127.0.0.1:0".parse().unwrap()));
        assert_eq!(ok.threads, Some(2));
        let ok = args(&["--gguf", gguf, "--unix-socket", "/tmp/x.sock"])
            .validate()
            .unwrap();
        assert_eq!(ok.listen, Listen::Unix("/tmp/x.sock".into()));
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path().to_str().unwrap();
        let ok = args(&["--code-model", dir, "--listen", "127.0.0.1:0"])
            .validate()
            .unwrap();
        assert_eq!(ok.model, ModelSource::CodeModel(dir.into()));
        for bad in [
            vec!["--listen", "127.0.0.1:0"],
            vec![
                "--gguf",
                gguf,
                "--code-model",
                dir,
                "--listen",
                "127.0.0.1:0",
            ],
            vec!["--code-model", gguf, "--listen", "127.0.0.1:0"],
            vec![
                "--code-model",
                "/nonexistent-dir",
                "--listen",
                "127.0.0.1:0",
            ],
            vec!["--gguf", dir, "--listen", "127.0.0.1:0"],
        ] {
            let err = args(&bad).validate().unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad:?}: {err}");
        }
        for bad in [
            vec!["--gguf", gguf],
            vec![
                "--gguf",
                gguf,
                "--listen",
                "1.2.3.4:5",
                "--unix-socket",
                "/s",
            ],
            vec!["--gguf", gguf, "--listen", "localhost"],
            vec!["--gguf", "/nonexistent.gguf", "--listen", "127.0.0.1:0"],
            vec!["--gguf", gguf, "--listen", "127.0.0.1:0", "--threads", "0"],
            vec![
                "--gguf",
                gguf,
                "--listen",
                "127.0.0.1:0",
                "--model-name",
                " ",
            ],
            vec!["--gguf", gguf, "--listen", "127.0.0.1:0", "--max-n", "0"],
        ] {
            let err = args(&bad).validate().unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad:?}: {err}");
        }
    }
}
