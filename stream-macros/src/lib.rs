//! `stream!`: Spark Streaming pipelines in a Scala-like DSL, compiled to dstream's typed
//! builder API. The grammar is in `docs/dsl.md`; parsing, validation and lowering live in
//! `stream-dsl`.

#![warn(missing_docs)]

/// A pipeline in Spark Streaming's Scala. See `docs/dsl.md`.
///
/// Evaluates to `Result<StreamingContext, dstream::Error>` when the pipeline declares its
/// context (`val ssc = StreamingContext(Seconds(1))`), to `Result<(), dstream::Error>` when it
/// uses one built in Rust (`using ssc`).
#[proc_macro]
pub fn stream(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    stream_dsl::expand(input.into()).into()
}
