//! The `stream!` DSL of dstream: Spark Streaming's Scala, compiled to the typed builder API of
//! `stream-core`. This crate does the work (it is an ordinary library, so that unit tests and
//! fuzzing reach it); `stream-macros` is the thin proc-macro entry point.
//!
//! Pipeline: [`parse`] (the program's statements and method chains) -> [`lower`] (validation
//! of names, arities, durations and plan rules, collecting every error; then code generation,
//! keeping the user's spans), with [`lambda`] turning Scala's function literals into closures.
//! The grammar and the mapping of each construct are in `docs/dsl.md`.

#![warn(missing_docs)]

pub mod lambda;
pub mod lower;
pub mod ops;
pub mod parse;
pub mod scala;

use proc_macro2::TokenStream;
use quote::quote;

/// Expands the body of `stream! { ... }`: an expression of type
/// `Result<StreamingContext, dstream::Error>` when the program declares its context
/// (`val ssc = StreamingContext(Seconds(1))`), `Result<(), dstream::Error>` otherwise.
///
/// Errors come out as `compile_error!`s at the user's tokens, all of them, next to the best
/// expansion possible without the faulty parts (so that the rest still type-checks).
pub fn expand(input: TokenStream) -> TokenStream {
    let (program, mut errors) = parse::parse(input);
    let (lowering, body) = lower::Lowering::program(&program, errors.is_empty());
    errors.extend(lowering.errors);
    let compile_errors = errors.iter().map(syn::Error::to_compile_error);
    quote! {
        {
            #(#compile_errors)*
            #[allow(unused_imports)]
            use ::dstream::prelude::*;
            // Spark's and Scala's method names, for lambda bodies (`crate::scala`).
            #[allow(unused_imports)]
            use ::dstream::dsl::{ScalaSeq as _, ScalaSized as _, ScalaState as _, SparkJoin as _, SparkPairRdd as _, SparkRdd as _};
            #[allow(clippy::redundant_closure_call)]
            let __dsl_result = (|| -> ::core::result::Result<_, ::dstream::Error> { #body })();
            __dsl_result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(input: TokenStream) -> Vec<String> {
        let (program, mut errors) = parse::parse(input);
        let (l, _) = lower::Lowering::program(&program, errors.is_empty());
        errors.extend(l.errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_talk_pipeline_expands_without_errors() {
        let out = expand(quote! {
            val ssc = StreamingContext(Seconds(1))
            ssc.checkpoint("/tmp/cp")
            val tweets = ssc.socketTextStream("localhost", 9999)
            val tags = tweets.flatMap(status => get_tags(status))
            val counts = tags.map(t => (t, 1)).reduceByKeyAndWindow(_ + _, _ - _, Minutes(1), Seconds(5))
            counts.print()
        })
        .to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(out.contains("reduce_by_key_and_window_inv"), "{out}");
        assert!(out.contains("socket_text_stream"), "{out}");
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let errors = errors_of(quote! {
            val ssc = StreamingContext(Seconds(1))
            val lines = ssc.socketTextStream("localhost", 9999)
            val a = lines.mapp(x => x)
            val b = lnes.map(x => x)
            val c = lines.window(Milliseconds(1500), Seconds(1))
            val d = lines.map(x => (x, 1)).updateStateByKey((vs: Vec<i32>, s: Option<i32>) => s)
            val a = lines.count(1)
        });
        let all = errors.join("\n");
        assert!(
            all.contains("unknown operation `mapp` on a stream; did you mean `map`?"),
            "{all}"
        );
        assert!(
            all.contains("undefined val `lnes`; did you mean `lines`?"),
            "{all}"
        );
        assert!(all.contains("The window duration of windowed DStream (1500 ms) must be a multiple of the slide duration of parent DStream (1000 ms)"), "{all}");
        assert!(
            all.contains(
                "`updateStateByKey` keeps state across batches, so it needs a checkpoint directory"
            ),
            "{all}"
        );
        assert!(
            all.contains("`count` takes 0 arguments (none), found 1"),
            "{all}"
        );
        assert!(all.contains("`a` is already defined"), "{all}");
        assert_eq!(errors.len(), 6, "{all}");
    }

    #[test]
    fn a_pipeline_without_output_is_refused() {
        let errors = errors_of(quote! {
            using ssc
            val lines = ssc.socketTextStream("localhost", 9999)
        });
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("no output operation"));
    }

    #[test]
    fn consecutive_maps_and_filters_fuse_into_one_closure() {
        let out = expand(quote! {
            using lines
            lines.map(_.len()).filter(*_ > 3).map(n => n * 2).print()
        })
        .to_string();
        assert_eq!(out.matches("flat_map").count(), 1, "{out}");
        assert!(!out.contains(". map ("), "{out}");
    }
}
