//! Errors, typed per area under one umbrella [`Error`].
//!
//! Where Spark Streaming reports the same misuse, the message is Spark's own (so that a Spark user
//! recognises it and the conformance vectors can check it); where Spark's remedy names a JVM API,
//! the message names the Rust one instead (`Batch::empty()` for `SparkContext.emptyRDD()`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::time::Time;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error returned by user code (a transform or output function).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every error dstream reports.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Misuse of the context's life cycle or of its configuration.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A batch could not be generated from the DStream graph.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// An input source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An output operation failed.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The checkpoint (state, positions, recovery) failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A scaled-out application could not run a task, or refused to join its group.
    #[error(transparent)]
    Scale(#[from] ScaleError),
    /// User code failed (returned an error or panicked) while processing the batch at `time`.
    #[error("user function failed in the batch at time {time}: {message}")]
    UserFunction {
        /// The batch time.
        time: Time,
        /// What the function returned or the panic message.
        message: String,
    },
}

/// Errors of a scaled-out application (instances in a consumer group, tasks that move).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScaleError {
    /// The instance refuses to join: its pipeline or the application's topics do not agree
    /// with the application (another pipeline shape, a topic with the wrong partition count).
    #[error("application {app}: this instance cannot join: {reason}")]
    Refused {
        /// The application id.
        app: String,
        /// What differs, and what to do.
        reason: String,
    },
    /// A task could not be started or run here.
    #[error("application {app}, task {task}: {message}")]
    Task {
        /// The application id.
        app: String,
        /// The task's name.
        task: String,
        /// What went wrong, and what to do.
        message: String,
    },
    /// Kafka (the group, the application's internal topics) could not be reached or used.
    #[error("application {app}: {message}")]
    Kafka {
        /// The application id.
        app: String,
        /// What failed, naming the brokers or topic.
        message: String,
    },
}

/// Life-cycle and configuration errors of a `StreamingContext`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextError {
    /// An output operation was registered on a context that is already running.
    #[error(
        "Adding new inputs, transformations, and output operations after starting a context is not supported"
    )]
    AddAfterStart,
    /// An output operation was registered on a context that has stopped.
    #[error(
        "Adding new inputs, transformations, and output operations after stopping a context is not supported"
    )]
    AddAfterStop,
    /// `start()` on a stopped context: a stopped context cannot be restarted, build a new one.
    #[error("StreamingContext has already been stopped")]
    AlreadyStopped,
    /// `start()` on a context without any output operation.
    #[error("No output operations registered, so nothing to execute")]
    NoOutputOperations,
    /// An operation combined DStreams that belong to different contexts.
    #[error("Some of the DStreams have different contexts ({0})")]
    DifferentContexts(String),
    /// The DStream's context was dropped before the operation was registered.
    #[error(
        "the StreamingContext of this DStream has been dropped; keep it alive while building and running the pipeline"
    )]
    ContextDropped,
    /// An invalid argument, with Spark's wording where Spark has one.
    #[error("{0}")]
    InvalidArgument(String),
    /// Waiting for the context (batches, termination) took longer than allowed.
    #[error("timed out: {0}")]
    TimedOut(String),
}

/// Errors while generating a batch from the DStream graph (Spark's `SparkException`s of
/// `UnionDStream` and `TransformedDStream`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphError {
    /// A parent of a union produced no batch for `time`.
    #[error("Could not generate RDD from a parent for unifying at time {0}")]
    UnionParentMissing(Time),
    /// A parent of a transform produced no batch for `time`.
    #[error("Couldn't generate RDD from parent at time {0}")]
    TransformParentMissing(Time),
    /// A transform function returned `None` instead of a batch.
    #[error(
        "Transform function must not return null (None). Return Batch::empty() instead to represent no element as the result of transformation."
    )]
    TransformReturnedNone,
}

/// Errors of input sources; each names what it was reading.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// A file was not valid UTF-8 text.
    #[error("{path} is not UTF-8 text (at byte {offset}); textFileStream reads UTF-8 lines")]
    NotText {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A custom source failed.
    #[error("source {name} failed: {message}")]
    Custom {
        /// The source's name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// Errors of output operations; each names what it was writing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// Writing to standard output failed.
    #[error("cannot write to standard output: {0}")]
    Stdout(Arc<std::io::Error>),
    /// A sink failed.
    #[error("output {name} failed: {message}")]
    Custom {
        /// The sink's name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// Errors of checkpoints and state; each names the directory or file involved.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A pipeline with stateful operations has no checkpoint directory (Spark's message).
    #[error(
        "The checkpoint directory has not been set. Please set it by StreamingContext::checkpoint() (or use get_or_create)."
    )]
    NotSet,
    /// A checkpoint file is missing or damaged.
    #[error("checkpoint file {file} is missing or damaged: {reason}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint was written by a pipeline of a different shape.
    #[error(
        "the checkpoint in {dir} was written by a different pipeline: {difference}; restore the pipeline as it was, or use a new checkpoint directory"
    )]
    Incompatible {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The first difference found.
        difference: String,
    },
    /// The state database failed (its message names the file when a file is at fault).
    #[error("checkpoint database in {dir}: {message}")]
    Database {
        /// The checkpoint directory.
        dir: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A file or directory of the checkpoint could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: Arc<std::io::Error>,
    },
    /// A key or state value could not be encoded or decoded.
    #[error("cannot encode or decode {what}: {message}")]
    Encode {
        /// What was being encoded or decoded.
        what: String,
        /// The codec's message.
        message: String,
    },
    /// An earlier batch failed, so its state changes are missing.
    #[error(
        "the state of the batch at {time} is missing (that batch failed); state cannot go on without it: fix the cause and restart from the checkpoint, which replays that batch"
    )]
    StateMissing {
        /// The failed batch.
        time: Time,
    },
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CheckpointError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

impl SourceError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SourceError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

impl OutputError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OutputError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

impl Error {
    /// An error returned by user code in the batch at `time`.
    pub fn user(time: Time, err: impl fmt::Display) -> Self {
        Error::UserFunction {
            time,
            message: err.to_string(),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Context(ContextError::InvalidArgument(msg.into()))
    }
}

/// Turns a caught panic payload into its message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}
