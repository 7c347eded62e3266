//! Validation and lowering: walks the parsed program once, checking what Spark would only
//! check at `start()` (and what the DSL adds), collecting every error, and emitting calls to
//! the typed builder API of `stream-core` with the user's spans on them, so that rustc's type
//! errors land on the user's operation or lambda.

use std::collections::HashMap;

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};

use crate::lambda::{Func, func};
use crate::ops::{self, On, Op, Role};
use crate::parse::{Arg, Call, Chain, Expr, Program, Stmt, split_args};

/// What a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The context declared in the macro.
    Context,
    /// A stream.
    Stream,
    /// A value built in Rust (`using`): a context or a stream, rustc knows which.
    Rust,
}

#[derive(Debug)]
struct Binding {
    kind: Kind,
    /// The slide duration in ms, when known from literals.
    slide: Option<i64>,
}

/// The expansion's state: what is bound, what the context is, and the errors so far.
pub struct Lowering {
    bindings: HashMap<String, Binding>,
    /// Names that failed to bind: their uses are not reported again.
    poisoned: Vec<String>,
    /// `val`s bound to a function literal (arguments of later operations, not streams).
    functions: std::collections::HashSet<String>,
    /// `val`s whose value failed (reported): still defined, for "already defined".
    failed_vals: std::collections::HashSet<String>,
    /// Every name a `val` of the program defines (to tell a use before its definition).
    defined: std::collections::HashSet<String>,
    /// The context declared in the macro: its name and batch duration (ms, if literal).
    context: Option<(Ident, Option<i64>)>,
    /// A checkpoint directory is set on the declared context (anywhere in the program).
    checkpoint: bool,
    has_output: bool,
    /// Every error found, each at its token; all are reported, not only the first.
    pub errors: Vec<syn::Error>,
}

/// The value of an integer literal, optionally negated and suffixed: `4`, `-1`, `0usize`.
fn literal_int(tokens: &TokenStream) -> Option<i64> {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let (negative, lit) = match toks.as_slice() {
        [TokenTree::Literal(l)] => (false, l),
        [TokenTree::Punct(p), TokenTree::Literal(l)] if p.as_char() == '-' => (true, l),
        _ => return None,
    };
    let text = lit.to_string().replace('_', "");
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    const SUFFIXES: [&str; 13] = [
        "", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
    ];
    if end == 0 || !SUFFIXES.contains(&&text[end..]) {
        return None;
    }
    let n: i64 = text[..end].parse().ok()?;
    Some(if negative { -n } else { n })
}

/// Milliseconds of a literal duration: `Seconds(5)`, `Minutes(1)`, `Milliseconds(500)`,
/// `Hours(1)`.
pub fn literal_ms(tokens: &TokenStream) -> Option<i64> {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let [TokenTree::Ident(unit), TokenTree::Group(g)] = toks.as_slice() else {
        return None;
    };
    let scale = unit_ms(unit)?;
    let inner: Vec<TokenTree> = g.stream().into_iter().collect();
    let [TokenTree::Literal(l)] = inner.as_slice() else {
        return None;
    };
    let n: i64 = l.to_string().replace('_', "").parse().ok()?;
    n.checked_mul(scale)
}

/// Scala's sequence constructors, as in `ssc.union(Seq(a, b))`.
const SEQUENCES: [&str; 3] = ["Seq", "List", "Array"];

/// Milliseconds in one `unit` of duration (`Seconds`: 1000).
fn unit_ms(unit: &Ident) -> Option<i64> {
    match unit.to_string().as_str() {
        "Milliseconds" => Some(1),
        "Seconds" => Some(1000),
        "Minutes" => Some(60_000),
        "Hours" => Some(3_600_000),
        _ => None,
    }
}

/// Whether an argument looks like a duration: a call of a duration unit.
fn is_duration(a: &Arg) -> bool {
    matches!(a.tokens.clone().into_iter().next(), Some(TokenTree::Ident(i)) if unit_ms(&i).is_some())
}

/// `{ let __dsl_recv = &recv; body }`: for a `body` that uses the receiver more than once.
/// Borrowed, not moved: a `val` receiver stays usable on later lines, as in Spark.
fn on_recv(s: Span, recv: &TokenStream, body: TokenStream) -> TokenStream {
    quote_spanned!(s=> { let __dsl_recv = &#recv; #body })
}

/// A slide argument, or Spark's default: the receiver's own slide (inside `on_recv`).
fn slide_or_parent(a: Option<&Arg>) -> TokenStream {
    match a {
        Some(a) => a.tokens.clone(),
        None => quote!(__dsl_recv.slide_duration()),
    }
}

fn fmt_ms(ms: i64) -> String {
    format!("{ms} ms")
}

impl Lowering {
    fn new() -> Self {
        Lowering {
            bindings: HashMap::new(),
            poisoned: Vec::new(),
            defined: std::collections::HashSet::new(),
            failed_vals: std::collections::HashSet::new(),
            functions: std::collections::HashSet::new(),
            context: None,
            checkpoint: false,
            has_output: false,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.errors.push(syn::Error::new(span, msg));
    }

    /// A partition count or partitioner argument. A literal count of 0 or below is an error
    /// at its token (Spark's `require`, at compile time); any other argument is checked when
    /// the pipeline is built (Spark's error, returned by the macro).
    fn partition_arg(&mut self, p: &Arg) -> TokenStream {
        let t = &p.tokens;
        match literal_int(t) {
            Some(n) => {
                self.check_partition_count(n, p.span);
                quote_spanned!(p.span=> ::dstream::dsl::partitioner(#t))
            }
            None => quote_spanned!(p.span=> ::dstream::dsl::try_partitioner(#t)?),
        }
    }

    /// A partition count argument (`repartition(n)`, `countByValue(n)`), checked as
    /// [`partition_arg`](Self::partition_arg) checks one.
    fn partition_count_arg(&mut self, p: &Arg) -> TokenStream {
        if let Some(n) = literal_int(&p.tokens) {
            self.check_partition_count(n, p.span);
        }
        let t = &p.tokens;
        quote_spanned!(p.span=> ::dstream::dsl::partition_count(#t)?)
    }

    /// Spark's error for a literal partition count `n` of 0 or below, at `span`.
    fn check_partition_count(&mut self, n: i64, span: Span) {
        if n <= 0 {
            self.error(
                span,
                format!("Number of partitions ({n}) must be positive."),
            );
        }
    }

    /// Lowers `program` to the statements of the expansion and the value it returns;
    /// `parsed` is false when some statement did not parse (it may have held the output).
    pub fn program(program: &Program, parsed: bool) -> (Lowering, TokenStream) {
        let mut l = Lowering::new();
        l.find_context(program);
        for stmt in &program.stmts {
            if let Stmt::Val { name, .. } = stmt {
                l.defined.insert(name.to_string());
            }
        }
        let mut body = TokenStream::new();
        for stmt in &program.stmts {
            body.extend(l.stmt(stmt));
        }
        if !l.has_output && l.errors.is_empty() && parsed {
            l.error(
                Span::call_site(),
                "this pipeline has no output operation (print, foreachRDD, saveAsTextFiles, saveToWebSocket, ...), so nothing would run (Spark: \"No output operations registered, so nothing to execute\")",
            );
        }
        let ret = match &l.context {
            Some((name, _)) => quote!(#name),
            None => quote!(()),
        };
        (l, quote! { #body ::core::result::Result::Ok(#ret) })
    }

    /// The context declared in the macro, and whether a checkpoint directory is set on it.
    fn find_context(&mut self, program: &Program) {
        for stmt in &program.stmts {
            if let Stmt::Val {
                name,
                value: Expr::NewContext { args, .. },
            } = stmt
                && self.context.is_none()
            {
                let batch = args.first().and_then(|a| literal_ms(&a.tokens));
                self.context = Some((name.clone(), batch));
                self.checkpoint |= args.len() == 2;
            }
        }
        let Some((ctx, _)) = self.context.clone() else {
            return;
        };
        for stmt in &program.stmts {
            let chain = match stmt {
                Stmt::Expr(Expr::Chain(c))
                | Stmt::Val {
                    value: Expr::Chain(c),
                    ..
                } => c,
                _ => continue,
            };
            // `ssc.checkpoint(dir)`; not a stream's `checkpoint(interval)` further along.
            if chain.root == ctx && chain.calls.first().is_some_and(|c| c.name == "checkpoint") {
                self.checkpoint = true;
            }
        }
    }

    fn stmt(&mut self, stmt: &Stmt) -> TokenStream {
        match stmt {
            Stmt::Using(names) => {
                for n in names {
                    self.bind(n, Kind::Rust, None);
                }
                TokenStream::new()
            }
            Stmt::Val { name, value } => {
                let lowered = match value {
                    Expr::NewContext { name: kw, args } => self.new_context(kw, args),
                    Expr::Chain(c) => self.chain(c),
                    Expr::Function(f) => {
                        // A function for later operations (`updateStateByKey(updateFunc)`):
                        // a closure with its parameters' count.
                        return match crate::lambda::func(f) {
                            Ok(func) => {
                                let cl = func.closure(func.arity().unwrap_or(1), 0, 0);
                                self.functions.insert(name.to_string());
                                quote_spanned!(name.span()=> #[allow(non_snake_case)] let #name = #cl;)
                            }
                            Err(e) => {
                                self.errors.push(e);
                                self.poisoned.push(name.to_string());
                                TokenStream::new()
                            }
                        };
                    }
                };
                match lowered {
                    Some((code, kind, slide)) => {
                        self.bind(name, kind, slide);
                        // Spark's names are camelCase: `val hashTags` must not warn.
                        quote_spanned!(name.span()=> #[allow(non_snake_case)] let #name = #code;)
                    }
                    None => {
                        if !self.failed_vals.insert(name.to_string())
                            || self.bindings.contains_key(&name.to_string())
                        {
                            self.error(
                                name.span(),
                                format!("`{name}` is already defined: a `val` is bound once (use another name)"),
                            );
                        }
                        self.poisoned.push(name.to_string());
                        TokenStream::new()
                    }
                }
            }
            Stmt::Expr(Expr::Chain(c)) => match self.chain(c) {
                Some((code, _, _)) => {
                    quote!(#[allow(non_snake_case)] let _ = #code;)
                }
                None => TokenStream::new(),
            },
            // Only a `val` takes a function literal (the parser makes no other).
            Stmt::Expr(Expr::Function(_)) => TokenStream::new(),
            Stmt::Expr(Expr::NewContext { name, .. }) => {
                self.error(
                    name.span(),
                    "bind the context to a name: `val ssc = StreamingContext(Seconds(1))`",
                );
                TokenStream::new()
            }
        }
    }

    fn bind(&mut self, name: &Ident, kind: Kind, slide: Option<i64>) {
        let key = name.to_string();
        if self.bindings.contains_key(&key) || self.failed_vals.contains(&key) {
            self.error(
                name.span(),
                format!("`{key}` is already defined: a `val` is bound once (use another name)"),
            );
            return;
        }
        self.bindings.insert(key, Binding { kind, slide });
    }

    fn new_context(
        &mut self,
        kw: &Ident,
        args: &[Arg],
    ) -> Option<(TokenStream, Kind, Option<i64>)> {
        let span = kw.span();
        if let Some(batch) = args.first()
            && let Some(ms) = literal_ms(&batch.tokens)
            && ms <= 0
        {
            // The runtime's message (`StreamingContext::new`), at the literal.
            self.error(
                batch.span,
                format!("Batch duration must be positive, got {ms} ms"),
            );
        }
        match args {
            [batch] if is_duration(batch) || args.len() == 1 => {
                let b = &batch.tokens;
                Some((
                    quote_spanned!(span=> ::dstream::StreamingContext::new(#b)?),
                    Kind::Context,
                    None,
                ))
            }
            [batch, dir] if is_duration(batch) => {
                let (b, d) = (&batch.tokens, &dir.tokens);
                Some((
                    quote_spanned!(span=> ::dstream::StreamingContext::builder(#b).checkpoint(#d).build()?),
                    Kind::Context,
                    None,
                ))
            }
            _ => {
                self.error(
                    span,
                    format!(
                        "`StreamingContext` takes (batchDuration) or (batchDuration, checkpointDirectory), found {} argument{}; there is no SparkConf or SparkContext to pass",
                        args.len(),
                        if args.len() == 1 { "" } else { "s" }
                    ),
                );
                None
            }
        }
    }

    /// Resolves a chain's root.
    fn root(&mut self, root: &Ident) -> Option<(Kind, Option<i64>)> {
        let key = root.to_string();
        if let Some(b) = self.bindings.get(&key) {
            return Some((b.kind, b.slide));
        }
        if self.poisoned.contains(&key) {
            return None;
        }
        if self.functions.contains(&key) {
            self.error(
                root.span(),
                format!("`{key}` is a function: pass it to an operation (`updateStateByKey({key})`), it has no operations of its own"),
            );
            return None;
        }
        if self.defined.contains(&key) {
            self.error(
                root.span(),
                format!(
                    "`{key}` is used before its definition: its `val` comes on a later line, and a val must be defined before the lines that use it (as in a Scala block)"
                ),
            );
            self.poisoned.push(key);
            return None;
        }
        let mut known: Vec<&String> = self.bindings.keys().collect();
        known.sort();
        let close = known
            .iter()
            .map(|k| (ops::distance(&key.to_lowercase(), &k.to_lowercase()), *k))
            .filter(|(d, _)| *d <= (key.len() / 3).clamp(1, 3))
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k.clone());
        let hint = match close {
            Some(k) => format!("; did you mean `{k}`?"),
            None => {
                "; define it with `val`, or name a value built in Rust with `using".to_string()
                    + &format!(" {key}`")
            }
        };
        self.error(root.span(), format!("undefined val `{key}`{hint}"));
        self.poisoned.push(key);
        None
    }

    /// Lowers a chain; `None` when its root is undefined (already reported).
    fn chain(&mut self, c: &Chain) -> Option<(TokenStream, Kind, Option<i64>)> {
        let (mut kind, mut slide) = self.root(&c.root)?;
        if kind == Kind::Context
            && let Some((_, batch)) = &self.context
        {
            slide = *batch;
        }
        let root = &c.root;
        let mut code = quote!(#root);
        let mut i = 0;
        while i < c.calls.len() {
            // A run of fusable narrow operations on a stream becomes one closure.
            let run = c.calls[i..]
                .iter()
                .take_while(|call| {
                    kind != Kind::Context
                        && ops::find(&call.name.to_string(), On::Stream)
                            .is_some_and(|o| o.role == Role::Fusable)
                        && call.args.len() == 1
                })
                .count();
            if run >= 2 {
                code = self.fused(code, &c.calls[i..i + run]);
                i += run;
                continue;
            }
            let call = &c.calls[i];
            // After an unknown operation the rest of the chain is not looked at: what the
            // receiver of its next call would be is unknown, and reporting each of them as
            // unknown too would bury the one error.
            (code, kind, slide) = self.call(code, kind, slide, call)?;
            i += 1;
        }
        Some((code, kind, slide))
    }

    /// `map`s and `filter`s in a row, as one `flat_map` whose closure returns an `Option`.
    fn fused(&mut self, recv: TokenStream, calls: &[Call]) -> TokenStream {
        let span = calls[0].name.span();
        let mut steps = TokenStream::new();
        let mut cur = Ident::new("__dsl_x0", span);
        for (k, call) in calls.iter().enumerate() {
            let f = match func(&call.args[0].tokens) {
                Ok(f) => f,
                Err(e) => {
                    self.errors.push(e);
                    continue;
                }
            };
            let s = call.name.span();
            if call.name == "filter" {
                let keep = f.applied(&[quote_spanned!(s=> &#cur)]);
                steps.extend(
                    quote_spanned!(s=> if !(#keep) { return ::core::option::Option::None; }),
                );
            } else {
                let next = Ident::new(&format!("__dsl_x{}", k + 1), s);
                let v = f.applied(&[quote!(#cur)]);
                steps.extend(quote_spanned!(s=> let #next = #v;));
                cur = next;
            }
        }
        quote_spanned!(span=> #recv.flat_map(move |__dsl_x0| { #steps ::core::option::Option::Some(#cur) }))
    }

    fn func_arg(&mut self, a: &Arg) -> Option<Func> {
        match func(&a.tokens) {
            Ok(f) => Some(f),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    /// A stream argument (`union`, `join`, ...): a chain of the DSL, or a Rust expression;
    /// `None` when it is a chain that failed (reported).
    fn stream_arg(&mut self, a: &Arg) -> Option<(TokenStream, Option<i64>)> {
        let toks: Vec<TokenTree> = a.tokens.clone().into_iter().collect();
        if let Some(TokenTree::Ident(first)) = toks.first()
            && (self.bindings.contains_key(&first.to_string())
                || self.poisoned.contains(&first.to_string())
                || self.defined.contains(&first.to_string()))
        {
            let (program, errors) = crate::parse::parse(a.tokens.clone());
            if errors.is_empty()
                && let [Stmt::Expr(Expr::Chain(c))] = program.stmts.as_slice()
            {
                return self.chain(c).map(|(code, _, slide)| (code, slide));
            }
        }
        Some((a.tokens.clone(), None))
    }

    /// Checks a window against its parent's slide (Spark's rules and messages); returns the
    /// window's slide.
    fn window_check(
        &mut self,
        parent: Option<i64>,
        window: &Arg,
        slide: Option<&Arg>,
    ) -> Option<i64> {
        let w = literal_ms(&window.tokens);
        let s = match slide {
            Some(a) => literal_ms(&a.tokens),
            None => parent,
        };
        if let (Some(p), Some(w)) = (parent, w)
            && p > 0
            && w % p != 0
        {
            self.error(
                window.span,
                format!(
                    "The window duration of windowed DStream ({}) must be a multiple of the slide duration of parent DStream ({})",
                    fmt_ms(w),
                    fmt_ms(p)
                ),
            );
        }
        if let (Some(p), Some(sa), Some(sv)) = (parent, slide, s)
            && p > 0
            && sv % p != 0
        {
            self.error(
                sa.span,
                format!(
                    "The slide duration of windowed DStream ({}) must be a multiple of the slide duration of parent DStream ({})",
                    fmt_ms(sv),
                    fmt_ms(p)
                ),
            );
        }
        s
    }

    fn same_slides(&mut self, span: Span, a: Option<i64>, b: Option<i64>) {
        if let (Some(a), Some(b)) = (a, b)
            && a != b
        {
            self.error(
                span,
                format!(
                    "Some of the DStreams have different slide durations ({} and {})",
                    fmt_ms(a),
                    fmt_ms(b)
                ),
            );
        }
    }

    fn needs_checkpoint(&mut self, call: &Call, what: &str) {
        if let Some((ctx, _)) = &self.context
            && !self.checkpoint
        {
            let msg = format!(
                "`{}` {what}, so it needs a checkpoint directory: add `{ctx}.checkpoint(\"dir\")` (Spark: \"The checkpoint directory has not been set. Please set it by StreamingContext.checkpoint().\")",
                call.name
            );
            self.error(call.name.span(), msg);
        }
    }

    /// One call: returns the new code, kind and slide; `None` for an unknown operation
    /// (reported).
    fn call(
        &mut self,
        recv: TokenStream,
        kind: Kind,
        slide: Option<i64>,
        call: &Call,
    ) -> Option<(TokenStream, Kind, Option<i64>)> {
        let name = call.name.to_string();
        let on = match kind {
            Kind::Context => Some(On::Context),
            Kind::Stream => Some(On::Stream),
            Kind::Rust => None,
        };
        // `ssc.union(Seq(a, b))` on a context built in Rust: the context's union.
        let context_union = name == "union"
            && matches!(call.args.first().and_then(|a| a.tokens.clone().into_iter().next()),
                Some(TokenTree::Ident(i)) if SEQUENCES.contains(&i.to_string().as_str()));
        // On a value built in Rust, `checkpoint(Seconds(10))` is a stream's interval,
        // `checkpoint(dir)` the context's directory.
        let stream_checkpoint = name == "checkpoint" && call.args.first().is_some_and(is_duration);
        let op = match on {
            Some(on) => ops::find(&name, on),
            None if context_union => ops::find(&name, On::Context),
            None if name == "checkpoint" => ops::find(
                &name,
                if stream_checkpoint {
                    On::Stream
                } else {
                    On::Context
                },
            ),
            None => ops::find_any(&name),
        };
        let Some(op) = op else {
            if let Some(instead) = ops::spark_only(&name) {
                self.error(call.name.span(), format!("`{name}` is Spark's: {instead}"));
                return None;
            }
            let elsewhere = match on {
                Some(On::Context) if ops::find(&name, On::Stream).is_some() => {
                    Some("; it is an operation on streams: call it on a stream of the context")
                }
                Some(On::Stream) if ops::find(&name, On::Context).is_some() => {
                    Some("; it is an operation on the context")
                }
                _ => None,
            };
            let hint = match (elsewhere, ops::suggest(&name, on)) {
                (Some(e), _) => e.to_string(),
                (None, Some(s)) => format!("; did you mean `{s}`?"),
                (None, None) => String::new(),
            };
            let what = match kind {
                Kind::Context => "on the context",
                _ => "on a stream",
            };
            self.error(
                call.name.span(),
                format!("unknown operation `{name}` {what}{hint}"),
            );
            return None;
        };
        if !op.arities.contains(&call.args.len()) {
            self.error(
                call.args_span,
                format!(
                    "`{name}` takes {} argument{} ({}), found {}",
                    ops::arities_text(op.arities),
                    if op.arities == [1] { "" } else { "s" },
                    if op.params.is_empty() {
                        "none"
                    } else {
                        op.params
                    },
                    call.args.len()
                ),
            );
            // A source that could not be made has no stream for the rest of the chain.
            return (op.role != Role::Source).then_some((recv, kind, slide));
        }
        // A value built in Rust is a context if the operation is one of the context's.
        let kind = match kind {
            Kind::Rust if op.on == On::Context => Kind::Context,
            Kind::Rust => Kind::Stream,
            k => k,
        };
        if op.role == Role::Output {
            self.has_output = true;
        }
        if op.role == Role::Stateful {
            let what = if op.camel.contains("Window") {
                "keeps its window's running counts"
            } else {
                "keeps state across batches"
            };
            self.needs_checkpoint(call, what);
        }
        Some(match self.lower(op, recv.clone(), slide, call) {
            Some((code, k, s)) => (code, k, s),
            None => (recv, kind, slide),
        })
    }

    /// The code of one known operation with a valid number of arguments.
    #[allow(clippy::too_many_lines)]
    fn lower(
        &mut self,
        op: &Op,
        recv: TokenStream,
        slide: Option<i64>,
        call: &Call,
    ) -> Option<(TokenStream, Kind, Option<i64>)> {
        let s = call.name.span();
        let a = &call.args;
        let m = |name: &str| Ident::new(name, s);
        let q = if op.fallible { quote!(?) } else { quote!() };
        let stream = |code: TokenStream| Some((code, Kind::Stream, slide));
        match op.camel {
            "map" | "filter" | "flatMap" | "mapValues" | "flatMapValues" | "mapPartitions" => {
                let f = self.func_arg(&a[0])?;
                let meth = m(op.snake);
                let cl = f.closure(1, 0, 0);
                stream(quote_spanned!(s=> #recv.#meth(#cl)))
            }
            "cache" | "persist" => stream(recv),
            "checkpoint" if op.on == On::Stream => {
                if let (Some(ms), Some(sl)) = (literal_ms(&a[0].tokens), slide)
                    && sl > 0
                {
                    if ms < sl {
                        self.error(a[0].span, format!("The checkpoint interval ({}) is lower than the slide time of this stream ({}). Please set it to at least {}.", fmt_ms(ms), fmt_ms(sl), fmt_ms(sl)));
                    } else if ms % sl != 0 {
                        self.error(a[0].span, format!("The checkpoint interval ({}) is not a multiple of the slide time of this stream ({}). Please set it to a multiple of {}.", fmt_ms(ms), fmt_ms(sl), fmt_ms(sl)));
                    }
                }
                let d = &a[0].tokens;
                stream(quote_spanned!(s=> #recv.checkpoint(#d)))
            }
            "glom" | "count" | "stateSnapshots" | "repartitionByKey" | "global" => {
                let meth = m(op.snake);
                stream(quote_spanned!(s=> #recv.#meth()))
            }
            "repartition" => {
                let n = self.partition_count_arg(&a[0]);
                stream(quote_spanned!(s=> #recv.repartition(#n)))
            }
            "union" if op.on == On::Stream => {
                let (other, other_slide) = self.stream_arg(&a[0])?;
                self.same_slides(a[0].span, slide, other_slide);
                stream(quote_spanned!(s=> #recv.union(&#other)))
            }
            "union" => {
                // Spark: ssc.union(Seq(a, b)); also a Rust slice or vector expression.
                let toks: Vec<TokenTree> = a[0].tokens.clone().into_iter().collect();
                let streams = match toks.as_slice() {
                    [TokenTree::Ident(seq), TokenTree::Group(g)]
                        if SEQUENCES.contains(&seq.to_string().as_str()) =>
                    {
                        let mut items: Vec<TokenStream> = Vec::new();
                        for x in split_args(g.stream()) {
                            let (code, _) = self.stream_arg(&x)?;
                            items.push(quote!((#code).clone()));
                        }
                        quote!(&[#(#items),*])
                    }
                    _ => a[0].tokens.clone(),
                };
                Some((
                    quote_spanned!(s=> #recv.union(#streams)),
                    Kind::Stream,
                    slide,
                ))
            }
            "reduce" => {
                let cl = self.func_arg(&a[0])?.closure(2, 0, 0);
                stream(quote_spanned!(s=> #recv.reduce(#cl)))
            }
            "countByValue" => match a.len() {
                0 => stream(quote_spanned!(s=> #recv.count_by_value())),
                _ => {
                    let n = self.partition_count_arg(&a[0]);
                    stream(quote_spanned!(s=> #recv.count_by_value_with_partitions(#n)))
                }
            },
            "transform" => {
                let f = self.func_arg(&a[0])?;
                if f.arity() == Some(2) {
                    let cl = f.closure(2, 0, 0);
                    stream(quote_spanned!(s=> #recv.transform_with_time(#cl)))
                } else {
                    let cl = f.closure(1, 0, 0);
                    stream(quote_spanned!(s=> #recv.transform(#cl)))
                }
            }
            "transformWith" => {
                let (other, other_slide) = self.stream_arg(&a[0])?;
                self.same_slides(a[0].span, slide, other_slide);
                let f = self.func_arg(&a[1])?;
                if f.arity() == Some(3) {
                    let cl = f.closure(3, 0, 0);
                    stream(quote_spanned!(s=> #recv.transform_with_time2(&#other, #cl)))
                } else {
                    let cl = f.closure(2, 0, 0);
                    stream(quote_spanned!(s=> #recv.transform_with(&#other, #cl)))
                }
            }
            "groupByKey" => match a.len() {
                0 => stream(quote_spanned!(s=> #recv.group_by_key())),
                _ => {
                    let p = self.partition_arg(&a[0]);
                    stream(quote_spanned!(s=> #recv.group_by_key_with_partitioner(#p)))
                }
            },
            "reduceByKey" => {
                let cl = self.func_arg(&a[0])?.closure(2, 0, 0);
                match a.len() {
                    1 => stream(quote_spanned!(s=> #recv.reduce_by_key(#cl))),
                    _ => {
                        let p = self.partition_arg(&a[1]);
                        stream(quote_spanned!(s=> #recv.reduce_by_key_with_partitioner(#cl, #p)))
                    }
                }
            }
            "combineByKey" => {
                let c1 = self.func_arg(&a[0])?.closure(1, 0, 0);
                let c2 = self.func_arg(&a[1])?.closure(2, 0, 0);
                let c3 = self.func_arg(&a[2])?.closure(2, 0, 0);
                let p = match a.get(3) {
                    Some(p) => self.partition_arg(p),
                    None => quote_spanned!(s=> ::dstream::dsl::default_partitioner(__dsl_recv)),
                };
                stream(on_recv(
                    s,
                    &recv,
                    quote_spanned!(s=> __dsl_recv.combine_by_key_with_partitioner(#c1, #c2, #c3, #p)),
                ))
            }
            "join" | "leftOuterJoin" | "rightOuterJoin" | "fullOuterJoin" | "cogroup" => {
                let (other, other_slide) = self.stream_arg(&a[0])?;
                self.same_slides(a[0].span, slide, other_slide);
                match a.len() {
                    1 => {
                        let meth = m(op.snake);
                        stream(quote_spanned!(s=> #recv.#meth(&#other)))
                    }
                    _ => {
                        let meth = m(&format!("{}_with_partitioner", op.snake));
                        let p = self.partition_arg(&a[1]);
                        stream(quote_spanned!(s=> #recv.#meth(&#other, #p)))
                    }
                }
            }
            "window" => {
                let new_slide = self.window_check(slide, &a[0], a.get(1));
                let w = &a[0].tokens;
                let code = match a.get(1) {
                    Some(sl) => {
                        let sl = &sl.tokens;
                        quote_spanned!(s=> #recv.window(#w, #sl))
                    }
                    None => quote_spanned!(s=> #recv.window_of(#w)),
                };
                Some((code, Kind::Stream, new_slide))
            }
            "countByWindow" | "countByValueAndWindow" => {
                let new_slide = self.window_check(slide, &a[0], a.get(1));
                let (w, sl) = (&a[0].tokens, &a[1].tokens);
                let meth = m(op.snake);
                Some((
                    quote_spanned!(s=> #recv.#meth(#w, #sl)),
                    Kind::Stream,
                    new_slide,
                ))
            }
            "groupByKeyAndWindow" => {
                let new_slide = self.window_check(slide, &a[0], a.get(1));
                let (w, sl) = (&a[0].tokens, slide_or_parent(a.get(1)));
                let code = on_recv(
                    s,
                    &recv,
                    quote_spanned!(s=> __dsl_recv.group_by_key_and_window(#w, #sl)),
                );
                Some((code, Kind::Stream, new_slide))
            }
            "reduceByWindow" => {
                let f = self.func_arg(&a[0])?.closure(2, 0, 0);
                if a.len() == 4 {
                    self.needs_checkpoint(call, "keeps its window's running value");
                    let inv = self.func_arg(&a[1])?.closure(2, 0, 0);
                    let new_slide = self.window_check(slide, &a[2], Some(&a[3]));
                    let (w, sl) = (&a[2].tokens, &a[3].tokens);
                    Some((
                        quote_spanned!(s=> #recv.reduce_by_window_inv(#f, #inv, #w, #sl)),
                        Kind::Stream,
                        new_slide,
                    ))
                } else {
                    let new_slide = self.window_check(slide, &a[1], Some(&a[2]));
                    let (w, sl) = (&a[1].tokens, &a[2].tokens);
                    Some((
                        quote_spanned!(s=> #recv.reduce_by_window(#f, #w, #sl)),
                        Kind::Stream,
                        new_slide,
                    ))
                }
            }
            "reduceByKeyAndWindow" => self.reduce_by_key_and_window(recv, slide, call),
            "updateStateByKey" => {
                let f = self.func_arg(&a[0])?;
                let four = f.arity() == Some(4);
                if a.len() == 1 && !four {
                    let cl = f.closure(2, 0, 0);
                    return stream(quote_spanned!(s=> #recv.update_state_by_key(#cl)));
                }
                let cl = if four {
                    f.closure(4, 0, 0)
                } else {
                    f.closure(2, 2, 0)
                };
                let p = match a.get(1) {
                    Some(p) => self.partition_arg(p),
                    None => quote_spanned!(s=> ::dstream::dsl::default_partitioner(__dsl_recv)),
                };
                let init = match a.get(2) {
                    Some(i) => {
                        let i = &i.tokens;
                        quote!(::core::option::Option::Some(#i))
                    }
                    None => quote!(::core::option::Option::None),
                };
                stream(on_recv(
                    s,
                    &recv,
                    quote_spanned!(s=> __dsl_recv.update_state_by_key_with(#cl, #p, #init)),
                ))
            }
            "mapWithState" => {
                let spec = self.state_spec(&a[0])?;
                stream(quote_spanned!(s=> #recv.map_with_state(#spec)))
            }
            "print" => match a.len() {
                0 => stream(quote_spanned!(s=> #recv.print()?)),
                _ => {
                    let n = &a[0].tokens;
                    stream(quote_spanned!(s=> #recv.print_n(#n)?))
                }
            },
            "foreachRDD" | "foreachBatch" => {
                let f = self.func_arg(&a[0])?;
                let cl = if f.arity() == Some(2) {
                    f.closure(2, 0, 0)
                } else {
                    f.closure(1, 0, 1)
                };
                stream(quote_spanned!(s=> #recv.foreach_batch(#cl)?))
            }
            "saveAsTextFiles" => {
                let prefix = &a[0].tokens;
                let suffix = match a.get(1) {
                    Some(x) => x.tokens.clone(),
                    None => quote!(""),
                };
                stream(quote_spanned!(s=> #recv.save_as_text_files(#prefix, #suffix)?))
            }
            "saveToWebSocket" => {
                let (dashboard, name) = (&a[0].tokens, &a[1].tokens);
                stream(quote_spanned!(s=> #recv.save_to_websocket(&#dashboard, #name)?))
            }
            "awaitTerminationOrTimeout" => {
                // Spark's takes milliseconds; a duration is accepted too.
                let t = &a[0].tokens;
                let t = quote_spanned!(a[0].span=> ::dstream::dsl::timeout(#t));
                Some((
                    quote_spanned!(s=> #recv.await_termination_or_timeout(#t)#q),
                    Kind::Context,
                    slide,
                ))
            }
            "kafkaStream" => {
                // A trait method of stream-kafka (the `kafka` feature of dstream).
                let source = &a[0].tokens;
                Some((
                    quote_spanned!(s=> ::dstream::kafka::KafkaStreams::kafka_stream(&#recv, #source)),
                    Kind::Stream,
                    slide,
                ))
            }
            "queueStream" => {
                let qv = &a[0].tokens;
                let one = match a.get(1) {
                    Some(x) => x.tokens.clone(),
                    None => quote!(true),
                };
                Some((
                    quote_spanned!(s=> #recv.queue_stream(&#qv, #one)),
                    Kind::Stream,
                    slide,
                ))
            }
            _ => {
                // Sources and control calls: the same arguments, snake_case name.
                let meth = m(op.snake);
                let args = a.iter().map(|x| &x.tokens);
                let code = quote_spanned!(s=> #recv.#meth(#(#args),*)#q);
                match op.role {
                    Role::Source => Some((code, Kind::Stream, slide)),
                    _ => Some((code, Kind::Context, slide)),
                }
            }
        }
    }

    /// Spark's overloads of `reduceByKeyAndWindow`, told apart by where the durations are.
    fn reduce_by_key_and_window(
        &mut self,
        recv: TokenStream,
        slide: Option<i64>,
        call: &Call,
    ) -> Option<(TokenStream, Kind, Option<i64>)> {
        let s = call.name.span();
        let a = &call.args;
        let f = self.func_arg(&a[0])?.closure(2, 0, 0);
        // With an inverse function the second argument is a function, not a duration.
        let inverse = a.len() >= 5 || (a.len() >= 3 && !is_duration(&a[1]));
        if !inverse {
            let new_slide = self.window_check(slide, &a[1], a.get(2));
            let (w, sl) = (&a[1].tokens, slide_or_parent(a.get(2)));
            let body = match a.get(3) {
                None => quote_spanned!(s=> __dsl_recv.reduce_by_key_and_window(#f, #w, #sl)),
                Some(p) => {
                    let p = self.partition_arg(p);
                    quote_spanned!(s=> __dsl_recv.reduce_by_key_and_window_with_partitioner(#f, #w, #sl, #p))
                }
            };
            let code = on_recv(s, &recv, body);
            return Some((code, Kind::Stream, new_slide));
        }
        self.needs_checkpoint(
            call,
            "with an inverse function keeps its window's running counts",
        );
        let inv = self.func_arg(&a[1])?.closure(2, 0, 0);
        let new_slide = self.window_check(slide, &a[2], a.get(3));
        let (w, sl) = (&a[2].tokens, slide_or_parent(a.get(3)));
        let body = match a.get(4) {
            None => quote_spanned!(s=> __dsl_recv.reduce_by_key_and_window_inv(#f, #inv, #w, #sl)),
            Some(p) => {
                let p = self.partition_arg(p);
                let filter = match a.get(5) {
                    Some(x) => self.func_arg(x)?.closure(1, 0, 0),
                    None => quote!(|_| true),
                };
                quote_spanned!(s=> __dsl_recv.reduce_by_key_and_window_inv_filtered(#f, #inv, #w, #sl, #p, #filter))
            }
        };
        let code = on_recv(s, &recv, body);
        Some((code, Kind::Stream, new_slide))
    }

    /// `StateSpec.function(f).timeout(d).numPartitions(n).initialState(rdd)`, or any Rust
    /// expression of a `StateSpec`.
    fn state_spec(&mut self, a: &Arg) -> Option<TokenStream> {
        let toks: Vec<TokenTree> = a.tokens.clone().into_iter().collect();
        let scala = matches!(toks.first(), Some(TokenTree::Ident(i)) if i == "StateSpec")
            && matches!(toks.get(1), Some(TokenTree::Punct(p)) if p.as_char() == '.');
        if !scala {
            return Some(a.tokens.clone());
        }
        let (program, errors) = crate::parse::parse(a.tokens.clone());
        let chain = match (errors.is_empty(), program.stmts.as_slice()) {
            (true, [Stmt::Expr(Expr::Chain(c))]) => c.clone(),
            _ => {
                self.error(a.span, "expected `StateSpec.function(f)` followed by `.timeout(d)`, `.numPartitions(n)` or `.initialState(rdd)`");
                return None;
            }
        };
        let mut code = TokenStream::new();
        for (k, c) in chain.calls.iter().enumerate() {
            let s = c.name.span();
            let name = c.name.to_string();
            let one = |this: &mut Self| -> Option<TokenStream> {
                if c.args.len() == 1 {
                    Some(c.args[0].tokens.clone())
                } else {
                    this.error(
                        c.args_span,
                        format!("`{name}` takes 1 argument, found {}", c.args.len()),
                    );
                    None
                }
            };
            match (k, name.as_str()) {
                (0, "function") => {
                    let arg = one(self)?;
                    let f = self.func_arg(&Arg {
                        tokens: arg,
                        span: c.args_span,
                    })?;
                    code = if f.arity() == Some(4) {
                        let cl = f.closure(4, 0, 0);
                        quote_spanned!(s=> ::dstream::StateSpec::function(#cl))
                    } else {
                        let cl = f.closure(3, 0, 0);
                        quote_spanned!(s=> ::dstream::StateSpec::simple(#cl))
                    };
                }
                (0, _) => {
                    self.error(
                        s,
                        "a `StateSpec` starts with `StateSpec.function(mappingFunction)`",
                    );
                    return None;
                }
                (
                    _,
                    "timeout" | "numPartitions" | "num_partitions" | "initialState"
                    | "initial_state",
                ) => {
                    let arg = one(self)?;
                    if matches!(name.as_str(), "numPartitions" | "num_partitions")
                        && let Some(n) = literal_int(&arg)
                    {
                        self.check_partition_count(n, c.args[0].span);
                    }
                    let meth = Ident::new(
                        match name.as_str() {
                            "timeout" => "timeout",
                            "numPartitions" | "num_partitions" => "num_partitions",
                            _ => "initial_state",
                        },
                        s,
                    );
                    code = quote_spanned!(s=> #code.#meth(#arg));
                }
                (_, other) => {
                    let hint = ["timeout", "numPartitions", "initialState"]
                        .iter()
                        .find(|n| ops::distance(&other.to_lowercase(), &n.to_lowercase()) <= 3)
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    self.error(s, format!("unknown `StateSpec` setting `{other}`{hint}"));
                    return None;
                }
            }
        }
        Some(code)
    }
}
