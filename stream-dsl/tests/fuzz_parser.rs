//! The parser and lowering never panic: arbitrary token streams (built from the DSL's own
//! vocabulary, so that they get deep into it, and from random punctuation) expand either to code
//! or to code with `compile_error!`s.

use proc_macro2::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "val",
    "var",
    "using",
    "new",
    "case",
    "if",
    "StreamingContext",
    "ssc",
    "lines",
    "x",
    "_",
    "_1",
    "_2",
    "map",
    "filter",
    "flatMap",
    "reduceByKey",
    "reduceByKeyAndWindow",
    "window",
    "updateStateByKey",
    "mapWithState",
    "StateSpec",
    "function",
    "timeout",
    "print",
    "foreachRDD",
    "join",
    "union",
    "transform",
    "countByValueAndWindow",
    "Seconds",
    "Minutes",
    "Milliseconds",
    "checkpoint",
    "start",
    "socketTextStream",
    "queueStream",
    "Seq",
    "move",
    "match",
    "else",
    "s",
    "toString",
    "length",
    "println",
    "sortBy",
    "distinct",
    "getOrElse",
    "List",
];
const PUNCT: &[char] = &[
    '.', ',', ';', '=', '>', '<', ':', '+', '-', '*', '|', '&', '!',
];

fn leaf() -> impl Strategy<Value = TokenTree> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(|w| TokenTree::Ident(Ident::new(w, Span::call_site()))),
        3 => (prop::sample::select(PUNCT), any::<bool>()).prop_map(|(c, joint)| {
            TokenTree::Punct(Punct::new(c, if joint { Spacing::Joint } else { Spacing::Alone }))
        }),
        1 => (0u32..5000).prop_map(|n| TokenTree::Literal(Literal::u32_unsuffixed(n))),
        1 => "[a-z ]{0,6}".prop_map(|s| TokenTree::Literal(Literal::string(&s))),
        1 => "[a-z ${}²é]{0,8}".prop_map(|s| TokenTree::Literal(Literal::string(&s))),
    ]
}

fn tree() -> impl Strategy<Value = TokenTree> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        (
            prop::sample::select(vec![
                Delimiter::Parenthesis,
                Delimiter::Brace,
                Delimiter::Bracket,
            ]),
            prop::collection::vec(inner, 0..8),
        )
            .prop_map(|(d, ts)| TokenTree::Group(Group::new(d, ts.into_iter().collect())))
    })
}

/// `=>` as the lexer makes it (a joint `=` then `>`), which random punctuation rarely gives.
fn arrow() -> Vec<TokenTree> {
    vec![
        TokenTree::Punct(Punct::new('=', Spacing::Joint)),
        TokenTree::Punct(Punct::new('>', Spacing::Alone)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_tokens_expand_without_panicking(
        trees in prop::collection::vec(prop_oneof![8 => tree().prop_map(|t| vec![t]), 1 => Just(arrow())], 0..24)
    ) {
        let input: TokenStream = trees.into_iter().flatten().collect();
        let out = stream_dsl::expand(input);
        prop_assert!(!out.is_empty());
    }

    /// The translator of Scala in lambda bodies (`stream_dsl::scala`), on its own and as the
    /// body of a function literal, gives code or an error, never a panic.
    #[test]
    fn scala_bodies_translate_without_panicking(
        trees in prop::collection::vec(prop_oneof![8 => tree().prop_map(|t| vec![t]), 1 => Just(arrow())], 0..24)
    ) {
        let body: TokenStream = trees.into_iter().flatten().collect();
        let _ = stream_dsl::scala::body(body.clone());
        let mut lambda: Vec<TokenTree> = vec![TokenTree::Ident(Ident::new("x", Span::call_site()))];
        lambda.extend(arrow());
        lambda.extend(body);
        let _ = stream_dsl::lambda::func(&lambda.into_iter().collect());
    }

    #[test]
    fn mutated_pipelines_expand_without_panicking(cut in 0usize..120, insert in tree()) {
        let good: TokenStream = r#"
            val ssc = StreamingContext(Seconds(1))
            ssc.checkpoint("/tmp/x")
            val lines = ssc.socketTextStream("localhost", 9999)
            val counts = lines.flatMap(_.split(' ').collect::<Vec<_>>()).map(w => (w, 1))
                .reduceByKeyAndWindow(_ + _, _ - _, Minutes(1), Seconds(5))
            counts.map { case (w, n) if n > 1 => (n, w) case (w, n) => (0, w) }.print()
        "#.parse().unwrap();
        let mut tokens: Vec<TokenTree> = good.into_iter().collect();
        let at = cut.min(tokens.len());
        tokens.insert(at, insert);
        if at + 1 < tokens.len() {
            tokens.remove(at + 1);
        }
        let out = stream_dsl::expand(tokens.into_iter().collect());
        prop_assert!(!out.is_empty());
    }
}
