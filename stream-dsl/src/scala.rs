//! Scala inside lambda bodies, as Rust. Applied to the body of every function literal of the
//! DSL (and, in turn, to the functions nested in it):
//!
//! | Scala | Rust |
//! |---|---|
//! | `t._1`, `t._2`, ... | `t.0`, `t.1`, ... |
//! | a function argument of a method: `rdd.map(_._2)`, `xs.filter(x => x > 0)`, `m.map { case (k, v) => v }` | a `move` closure |
//! | `rdd.foreach(println)` | each record printed as Spark prints it |
//! | `f _` (eta expansion) | `f` |
//! | `x match { case p => e ... }` | `match x { p => e, ... }` |
//! | `if (c) a else b` | `if c { a } else { b }` |
//! | `s"$w has ${n + 1}"` | `format!("{} has {}", w, n + 1)` |
//! | `Seq(a, b)`, `List(...)`, `Array(...)` | `vec![a, b]` |
//! | `val x = e;`, `var x = e;` | `let x = e;`, `let mut x = e;` |
//! | `.toString`, `.length`, `.size`, `.isEmpty`, `.nonEmpty`, `.sum`, `.toUpperCase`, `.toLowerCase`, `.trim`, `.milliseconds` (no parentheses) | the method called |
//! | `.getOrElse(d)` | `.unwrap_or(d)` |
//! | `.flatMap`, `.mapValues`, `.flatMapValues`, `.mapPartitions`, `.startsWith`, `.endsWith` | the snake_case method |
//! | an RDD's `distinct()`, `join(other)`, `cogroup(other)`, `sortBy(f)`, `sortByKey()` | Spark's defaults (`dstream::dsl::SparkRdd`) |
//! | `rdd.top(n)(Ordering.by(f))` | `rdd.top_by(n, f)` |
//!
//! Scala forms with no translation (`for (x <- xs)`, `new Foo(...)`, `asInstanceOf`) are errors
//! at their token that say what to write.
//!
//! Statements in a block still need `;` between them: a macro does not see Scala's newlines.

use proc_macro2::{Delimiter, Group, Ident, Literal, Spacing, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote_spanned};

use crate::lambda::{self, Func};
use crate::parse::split_args;

/// Scala's parameterless methods, called without parentheses: the Rust method each calls.
const PARENLESS: &[(&str, &str)] = &[
    ("toString", "to_string"),
    ("length", "len"),
    ("size", "size"),
    ("isEmpty", "isEmpty"),
    ("nonEmpty", "nonEmpty"),
    ("sum", "sum"),
    ("toUpperCase", "to_uppercase"),
    ("toLowerCase", "to_lowercase"),
    ("trim", "trim"),
    ("milliseconds", "milliseconds"),
    ("getOption", "getOption"),
];

/// Methods called with arguments that have another name here: (Scala name, argument count or
/// any, Rust name, arguments appended).
const RENAMED: &[(&str, Option<usize>, &str, &str)] = &[
    ("toString", Some(0), "to_string", ""),
    ("getOrElse", Some(1), "unwrap_or", ""),
    ("distinct", Some(0), "spark_distinct", ""),
    ("join", Some(1), "spark_join", ""),
    ("cogroup", Some(1), "spark_cogroup", ""),
    ("sortBy", Some(1), "sortBy", "true"),
    ("sortBy", Some(3), "sort_by", ""),
    ("sortByKey", Some(0), "sortByKey", "true"),
    ("flatMap", None, "flat_map", ""),
    ("mapValues", None, "map_values", ""),
    ("flatMapValues", None, "flat_map_values", ""),
    ("mapPartitions", None, "map_partitions", ""),
    ("startsWith", None, "starts_with", ""),
    ("endsWith", None, "ends_with", ""),
    ("toUpperCase", Some(0), "to_uppercase", ""),
    ("toLowerCase", Some(0), "to_lowercase", ""),
];

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "case", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "static", "struct", "super", "trait", "type", "unsafe", "use", "where",
    "while", "yield", "val", "var",
];

fn is_punct(t: Option<&TokenTree>, c: char) -> bool {
    matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

fn is_ident(t: Option<&TokenTree>, s: &str) -> bool {
    matches!(t, Some(TokenTree::Ident(i)) if i == s)
}

fn is_arrow(toks: &[TokenTree], i: usize) -> bool {
    matches!(toks.get(i), Some(TokenTree::Punct(p)) if p.as_char() == '=' && p.spacing() == Spacing::Joint)
        && is_punct(toks.get(i + 1), '>')
}

fn group(delim: Delimiter, stream: TokenStream, span: Span) -> TokenTree {
    let mut g = Group::new(delim, stream);
    g.set_span(span);
    TokenTree::Group(g)
}

/// Translates the Scala forms of a lambda body (see the module).
pub fn body(tokens: TokenStream) -> syn::Result<TokenStream> {
    let toks: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out: Vec<TokenTree> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        match t {
            // s"..." interpolation.
            TokenTree::Ident(id)
                if id == "s"
                    && !is_punct(out.last(), '.')
                    && matches!(toks.get(i + 1), Some(TokenTree::Literal(l)) if l.to_string().starts_with('"')) =>
            {
                let Some(TokenTree::Literal(l)) = toks.get(i + 1) else {
                    unreachable!("matched above")
                };
                out.extend(interpolate(l)?);
                i += 2;
            }
            // `val x = e` / `var x = e` in a block.
            TokenTree::Ident(id)
                if (id == "val" || id == "var")
                    && matches!(
                        toks.get(i + 1),
                        Some(TokenTree::Ident(_) | TokenTree::Group(_))
                    )
                    && (is_punct(toks.get(i + 2), '=') || is_punct(toks.get(i + 2), ':')) =>
            {
                out.push(TokenTree::Ident(Ident::new("let", id.span())));
                if id == "var" {
                    out.push(TokenTree::Ident(Ident::new("mut", id.span())));
                }
                i += 1;
            }
            // Seq(a, b), List(...), Array(...) -> vec![...]
            TokenTree::Ident(id)
                if ["Seq", "List", "Array"].contains(&id.to_string().as_str())
                    && !is_punct(out.last(), '.')
                    && !is_punct(out.last(), ':')
                    && matches!(toks.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis) =>
            {
                let Some(TokenTree::Group(g)) = toks.get(i + 1) else {
                    unreachable!("matched above")
                };
                let items = args(g.stream())?;
                let s = id.span();
                out.extend(quote_spanned!(s=> ::std::vec!));
                out.push(group(Delimiter::Bracket, items, g.span()));
                i += 2;
            }
            // if (c) a else b
            TokenTree::Ident(id)
                if id == "if"
                    && matches!(toks.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
                    && !matches!(toks.get(i + 2), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace) =>
            {
                i = scala_if(&toks, i, &mut out)?;
            }
            // Scala's `for (x <- xs) ...` / `for ... yield`.
            TokenTree::Ident(id)
                if id == "for"
                    && matches!(toks.get(i + 1), Some(TokenTree::Group(g))
                        if g.delimiter() != Delimiter::Bracket && has_left_arrow(&g.stream())) =>
            {
                return Err(syn::Error::new(
                    id.span(),
                    "Scala's `for (x <- xs)` is written `for x in xs { ... }` here, and `for ... yield` with iterator adaptors (`xs.iter().map(...)`)",
                ));
            }
            // Scala's `new Foo(...)`.
            TokenTree::Ident(id)
                if id == "new"
                    && !is_punct(out.last(), '.')
                    && !is_punct(out.last(), ':')
                    && matches!(toks.get(i + 1), Some(TokenTree::Ident(_))) =>
            {
                return Err(syn::Error::new(
                    id.span(),
                    "Rust has no `new` operator: call the type's constructor (`Foo::new(...)`) or write a struct literal",
                ));
            }
            // x match { case ... }
            TokenTree::Ident(id)
                if id == "match"
                    && matches!(toks.get(i + 1), Some(TokenTree::Group(g))
                        if g.delimiter() == Delimiter::Brace
                            && is_ident(g.stream().into_iter().next().as_ref(), "case")) =>
            {
                let Some(TokenTree::Group(g)) = toks.get(i + 1) else {
                    unreachable!("matched above")
                };
                let start = receiver_start(&out);
                if start == out.len() {
                    return Err(syn::Error::new(
                        id.span(),
                        "Scala's `x match { case ... }` needs the value before `match`; it may also be written `match x { p => e, ... }` here",
                    ));
                }
                let recv: TokenStream = out.drain(start..).collect();
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                let Func::Cases { arms, .. } = lambda::cases(&inner, g.span())? else {
                    unreachable!("cases gives cases")
                };
                let s = id.span();
                out.extend(quote_spanned!(s=> match #recv));
                out.push(group(Delimiter::Brace, arms, g.span()));
                i += 2;
            }
            // `f _`: Scala's eta expansion.
            TokenTree::Ident(id)
                if id == "_"
                    && matches!(out.last(), Some(TokenTree::Ident(f)) if !KEYWORDS.contains(&f.to_string().as_str()) && f != "_")
                    && !is_punct(out.get(out.len().wrapping_sub(2)), '|')
                    && (toks.get(i + 1).is_none()
                        || is_punct(toks.get(i + 1), ',')
                        || is_punct(toks.get(i + 1), ';')) =>
            {
                i += 1;
            }
            TokenTree::Punct(p) if p.as_char() == '.' && !is_punct(out.last(), '.') => {
                out.push(t.clone());
                i += 1;
                let Some(TokenTree::Ident(name)) = toks.get(i) else {
                    continue;
                };
                let s = name.to_string();
                // ._1 -> .0
                if let Some(k) = s.strip_prefix('_').and_then(|d| d.parse::<usize>().ok())
                    && k >= 1
                    && !s[1..].starts_with('0')
                {
                    let mut lit = Literal::usize_unsuffixed(k - 1);
                    lit.set_span(name.span());
                    out.push(TokenTree::Literal(lit));
                    i += 1;
                    continue;
                }
                // Scala's casts have no counterpart.
                if s == "asInstanceOf" || s == "isInstanceOf" {
                    return Err(syn::Error::new(
                        name.span(),
                        format!(
                            "Scala's `{s}` has no counterpart: Rust's values have one type (use `match`, `as` for numbers, or `From`/`TryFrom`)"
                        ),
                    ));
                }
                // `top(n)(Ordering.by(f))`: the `n` largest by `f`.
                if s == "top"
                    && let (Some(TokenTree::Group(n)), Some(TokenTree::Group(ord))) =
                        (toks.get(i + 1), toks.get(i + 2))
                    && n.delimiter() == Delimiter::Parenthesis
                    && ord.delimiter() == Delimiter::Parenthesis
                {
                    let o: Vec<TokenTree> = ord.stream().into_iter().collect();
                    let by = match o.as_slice() {
                        [
                            TokenTree::Ident(ordering),
                            dot,
                            TokenTree::Ident(by),
                            TokenTree::Group(f),
                        ] if ordering == "Ordering" && is_punct(Some(dot), '.') && by == "by" => {
                            f.stream()
                        }
                        _ => {
                            return Err(syn::Error::new(
                                ord.span(),
                                "`top(n)(ordering)` takes `Ordering.by(f)` here; for another order use `top_by(n, key)`",
                            ));
                        }
                    };
                    let f = unmoved(arg(by)?);
                    let count = body(n.stream())?;
                    let sp = name.span();
                    out.extend(quote_spanned!(sp=> top_by));
                    out.push(group(
                        Delimiter::Parenthesis,
                        quote_spanned!(sp=> #count, #f),
                        n.span(),
                    ));
                    i += 3;
                    continue;
                }
                match toks.get(i + 1) {
                    Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => {
                        let n = split_args(g.stream()).len();
                        let renamed = RENAMED
                            .iter()
                            .find(|(from, argc, _, _)| *from == s && argc.is_none_or(|a| a == n));
                        let mut inner = args_of(g.stream(), &s)?;
                        let method = match renamed {
                            Some((_, _, to, extra)) => {
                                if !extra.is_empty() {
                                    let extra: TokenStream = extra.parse().expect("a literal");
                                    if !inner.is_empty() {
                                        inner.extend(quote_spanned!(g.span()=> ,));
                                    }
                                    inner.extend(extra);
                                }
                                Ident::new(to, name.span())
                            }
                            None => name.clone(),
                        };
                        out.push(TokenTree::Ident(method));
                        out.push(group(Delimiter::Parenthesis, inner, g.span()));
                        i += 2;
                    }
                    // Scala's block argument: `xs.map { case (k, v) => v }`, `xs.foreach { x => ... }`.
                    Some(TokenTree::Group(g))
                        if g.delimiter() == Delimiter::Brace && {
                            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                            is_ident(inner.first(), "case") || is_arrow(&inner, 1)
                        } =>
                    {
                        let whole: TokenStream = TokenTree::Group(g.clone()).into();
                        let code = arg(whole)?;
                        let code = if MOVING.contains(&s.as_str()) {
                            code
                        } else {
                            unmoved(code)
                        };
                        out.push(TokenTree::Ident(name.clone()));
                        out.push(group(Delimiter::Parenthesis, code, g.span()));
                        i += 2;
                    }
                    // `.sum::<T>()`, a turbofish: as written.
                    Some(TokenTree::Punct(p)) if p.as_char() == ':' => {
                        out.push(TokenTree::Ident(name.clone()));
                        i += 1;
                    }
                    _ => {
                        match PARENLESS.iter().find(|(from, _)| *from == s) {
                            Some((_, to)) => {
                                out.push(TokenTree::Ident(Ident::new(to, name.span())));
                                out.push(group(
                                    Delimiter::Parenthesis,
                                    TokenStream::new(),
                                    name.span(),
                                ));
                            }
                            None => out.push(TokenTree::Ident(name.clone())),
                        }
                        i += 1;
                    }
                }
            }
            TokenTree::Group(g) => {
                out.push(group(g.delimiter(), body(g.stream())?, g.span()));
                i += 1;
            }
            _ => {
                out.push(t.clone());
                i += 1;
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Whether `tokens` hold Scala's `<-` at their top level.
fn has_left_arrow(tokens: &TokenStream) -> bool {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    toks.windows(2).any(|w| {
        matches!(&w[0], TokenTree::Punct(p) if p.as_char() == '<' && p.spacing() == Spacing::Joint)
            && is_punct(Some(&w[1]), '-')
    })
}

/// Where the value before a postfix `match` starts in `out`: a path, call or field chain.
fn receiver_start(out: &[TokenTree]) -> usize {
    let mut start = out.len();
    while let Some(t) = start.checked_sub(1).map(|k| &out[k]) {
        let primary = match t {
            TokenTree::Ident(i) => !KEYWORDS.contains(&i.to_string().as_str()),
            TokenTree::Literal(_) | TokenTree::Group(_) => true,
            TokenTree::Punct(_) => false,
        };
        if !primary {
            break;
        }
        start -= 1;
        if is_punct(start.checked_sub(1).map(|k| &out[k]), '.') {
            start -= 1;
            continue;
        }
        // A call or an index: `f(x) match`, `a[0] match`.
        if matches!(out[start], TokenTree::Group(ref g) if g.delimiter() != Delimiter::Brace)
            && matches!(
                start.checked_sub(1).map(|k| &out[k]),
                Some(TokenTree::Ident(_) | TokenTree::Group(_))
            )
        {
            continue;
        }
        break;
    }
    start
}

/// `if (c) a else b` at `toks[i]`, with its branches in braces; returns the index after it.
fn scala_if(toks: &[TokenTree], i: usize, out: &mut Vec<TokenTree>) -> syn::Result<usize> {
    let (TokenTree::Ident(kw), Some(TokenTree::Group(cond))) = (&toks[i], toks.get(i + 1)) else {
        unreachable!("checked by the caller")
    };
    // The branch ends at `else` (then) or at `;`/`,` or the end (else) of this level.
    let end_of = |from: usize, stop_at_else: bool| -> usize {
        let mut j = from;
        while j < toks.len() {
            if (stop_at_else && is_ident(toks.get(j), "else"))
                || is_punct(toks.get(j), ';')
                || is_punct(toks.get(j), ',')
            {
                break;
            }
            j += 1;
        }
        j
    };
    let then_end = end_of(i + 2, true);
    if then_end == i + 2 {
        return Err(syn::Error::new(
            kw.span(),
            "expected an expression after Scala's `if (condition)`",
        ));
    }
    out.push(TokenTree::Ident(kw.clone()));
    out.extend(body(cond.stream())?);
    let then: TokenStream = toks[i + 2..then_end].iter().cloned().collect();
    out.push(group(Delimiter::Brace, body(then)?, cond.span()));
    if !is_ident(toks.get(then_end), "else") {
        return Ok(then_end);
    }
    out.push(toks[then_end].clone());
    let else_end = end_of(then_end + 1, false);
    let other: TokenStream = toks[then_end + 1..else_end].iter().cloned().collect();
    if other.is_empty() {
        return Err(syn::Error::new(
            toks[then_end].span(),
            "expected an expression after `else`",
        ));
    }
    out.push(group(Delimiter::Brace, body(other)?, toks[then_end].span()));
    Ok(else_end)
}

/// Methods whose function arguments are `move` closures: a batch's transformations keep them
/// beyond the call (`'static`), so they take what they use (a count, a threshold) with them.
/// Other methods' closures (an iterator's `for_each`, `fold`, a batch's `foreach`, `sortBy`)
/// borrow, so that they can use what the enclosing lambda holds (a sink, a map).
const MOVING: &[&str] = &[
    "map",
    "filter",
    "flatMap",
    "flat_map",
    "mapValues",
    "map_values",
    "flatMapValues",
    "flat_map_values",
    "mapPartitions",
    "map_partitions",
    "reduceByKey",
    "reduce_by_key",
    "combineByKey",
    "combine_by_key",
];

/// A sequence's arguments (`Seq(...)`): each function literal made a closure.
fn args(tokens: TokenStream) -> syn::Result<TokenStream> {
    args_of(tokens, "map")
}

/// Method `method`'s arguments: each function literal made a closure.
fn args_of(tokens: TokenStream, method: &str) -> syn::Result<TokenStream> {
    let moving = MOVING.contains(&method);
    let mut out = TokenStream::new();
    for (k, a) in split_args(tokens).into_iter().enumerate() {
        if k > 0 {
            out.extend(quote_spanned!(a.span=> ,));
        }
        let code = arg(a.tokens)?;
        out.extend(if moving { code } else { unmoved(code) });
    }
    Ok(out)
}

/// A closure made here without its `move`.
fn unmoved(code: TokenStream) -> TokenStream {
    let toks: Vec<TokenTree> = code.clone().into_iter().collect();
    if is_ident(toks.first(), "move") && is_punct(toks.get(1), '|') {
        toks.into_iter().skip(1).collect()
    } else {
        code
    }
}

/// One argument: a Scala function becomes a closure (its own functions first, so that a `_`
/// belongs to the innermost argument, as in Scala); anything else is translated as a body.
fn arg(tokens: TokenStream) -> syn::Result<TokenStream> {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    match toks.as_slice() {
        [TokenTree::Ident(p)] if p == "println" => {
            return Ok(quote_spanned!(p.span()=> ::dstream::dsl::println));
        }
        // `f _`
        [TokenTree::Ident(f), TokenTree::Ident(u)]
            if u == "_" && !KEYWORDS.contains(&f.to_string().as_str()) =>
        {
            return Ok(TokenTree::Ident(f.clone()).into());
        }
        _ => {}
    }
    // A Rust closure: its body may hold Scala forms, its parameters are Rust's.
    if is_punct(toks.first(), '|') || is_ident(toks.first(), "move") {
        return body(tokens);
    }
    let scala_literal = is_arrow(&toks, 1)
        || matches!(toks.as_slice(), [TokenTree::Group(g)] if g.delimiter() == Delimiter::Brace && {
            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
            is_ident(inner.first(), "case") || is_arrow(&inner, 1)
        });
    if scala_literal {
        return Ok(closure(&lambda::func(&tokens)?));
    }
    let translated = body(tokens)?;
    if has_placeholder(&translated) {
        return Ok(closure(&lambda::func(&translated)?));
    }
    Ok(translated)
}

/// A closure of a function literal, with as many parameters as it names (a case function
/// takes one).
fn closure(f: &Func) -> TokenStream {
    f.closure(f.arity().unwrap_or(1), 0, 0)
}

/// Whether `tokens` hold a placeholder `_` where the DSL would make it a parameter.
fn has_placeholder(tokens: &TokenStream) -> bool {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let mut angle = 0usize;
    for (i, t) in toks.iter().enumerate() {
        let prev_colons =
            i >= 2 && is_punct(toks.get(i - 1), ':') && is_punct(toks.get(i - 2), ':');
        // A Rust closure's `_` are patterns, to the end of the expression; so are a macro's.
        if lambda::closure_starts_at(&toks, i) {
            return false;
        }
        if lambda::is_macro_args(&toks, i) {
            continue;
        }
        match t {
            TokenTree::Punct(p) if p.as_char() == '<' && (prev_colons || angle > 0) => angle += 1,
            TokenTree::Punct(p) if p.as_char() == '>' && angle > 0 => angle -= 1,
            TokenTree::Ident(id) if id == "_" && angle == 0 && !is_arrow(&toks, i + 1) => {
                return true;
            }
            TokenTree::Group(g)
                if g.delimiter() != Delimiter::Brace && has_placeholder(&g.stream()) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// `s"..."`: Scala's string interpolation as `format!`.
fn interpolate(lit: &Literal) -> syn::Result<TokenStream> {
    let text = lit.to_string();
    let span = lit.span();
    let inner = &text[1..text.len() - 1];
    let mut fmt = String::from("\"");
    let mut values: Vec<TokenStream> = Vec::new();
    let chars: Vec<char> = inner.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        match c {
            '$' if chars.get(k + 1) == Some(&'$') => {
                fmt.push('$');
                k += 2;
            }
            '$' if chars.get(k + 1) == Some(&'{') => {
                let mut depth = 0;
                let mut j = k + 1;
                while j < chars.len() {
                    match chars[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(syn::Error::new(
                        span,
                        "unclosed `${` in this interpolated string",
                    ));
                }
                // The literal's text is as written: quotes inside `${...}` are escaped there.
                let expr: String = chars[k + 2..j]
                    .iter()
                    .collect::<String>()
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\");
                let ts: TokenStream = expr.parse().map_err(|e| {
                    syn::Error::new(span, format!("cannot read `${{{expr}}}` here: {e}"))
                })?;
                values.push(respan(body(ts)?, span));
                fmt.push_str("{}");
                k = j + 1;
            }
            '$' if chars
                .get(k + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') =>
            {
                let mut j = k + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[k + 1..j].iter().collect();
                values.push(Ident::new(&name, span).into_token_stream());
                fmt.push_str("{}");
                k = j;
            }
            '{' => {
                fmt.push_str("{{");
                k += 1;
            }
            '}' => {
                fmt.push_str("}}");
                k += 1;
            }
            _ => {
                fmt.push(c);
                k += 1;
            }
        }
    }
    fmt.push('"');
    let mut fmt: Literal = fmt
        .parse()
        .map_err(|e| syn::Error::new(span, format!("cannot make a format string: {e}")))?;
    fmt.set_span(span);
    Ok(quote_spanned!(span=> ::std::format!(#fmt #(, #values)*)))
}

/// `tokens` with every span set to `span` (an interpolated expression has no span of its own).
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|t| match t {
            TokenTree::Group(g) => group(g.delimiter(), respan(g.stream(), span), span),
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn t(ts: TokenStream) -> String {
        body(ts).unwrap().to_string()
    }

    #[test]
    fn nested_placeholders_belong_to_the_innermost_argument() {
        let out = t(quote!(rdd.map(_._2).filter(_ > 0)));
        assert!(
            out.contains("map (move | __dsl_p0 | __dsl_p0 . 1)"),
            "{out}"
        );
        assert!(
            out.contains("filter (move | __dsl_p0 | __dsl_p0 > 0)"),
            "{out}"
        );
    }

    #[test]
    fn rust_closures_and_turbofish_are_left_alone() {
        let out = t(quote!(v.iter().map(|(_, n)| n).sum::<i32>()));
        assert_eq!(
            out,
            quote!(v.iter().map(|(_, n)| n).sum::<i32>()).to_string()
        );
    }

    #[test]
    fn scala_if_match_and_interpolation() {
        let out = t(quote!(if (n > 1) "many" else "one"));
        assert_eq!(out, quote!(if n > 1 { "many" } else { "one" }).to_string());
        let out = t(quote!(x match { case 1 => "a" case _ => "b" }));
        assert!(out.starts_with("match x {"), "{out}");
        let out = t(quote!(s "$w: ${n + 1} {x}"));
        assert!(out.contains("\"{}: {} {{x}}\""), "{out}");
    }

    #[test]
    fn parenless_methods_sequences_and_vals() {
        assert_eq!(t(quote!(w.length)), quote!(w.len()).to_string());
        assert_eq!(t(quote!(n.toString)), quote!(n.to_string()).to_string());
        assert_eq!(t(quote!(Seq(1, 2))), quote!(::std::vec![1, 2]).to_string());
        assert_eq!(t(quote!(val x = 1; x)), quote!(let x = 1; x).to_string());
        assert_eq!(
            t(quote!(rdd.distinct())),
            quote!(rdd.spark_distinct()).to_string()
        );
        assert_eq!(
            t(quote!(rdd.sortBy(f)).into_iter().collect()),
            quote!(rdd.sortBy(f, true)).to_string()
        );
    }

    #[test]
    fn top_with_an_ordering_and_scala_only_forms() {
        let out = t(quote!(rdd.top(3)(Ordering.by(_._2))));
        assert!(
            out.starts_with("rdd . top_by (3 , | __dsl_p0 | __dsl_p0 . 1)"),
            "{out}"
        );
        for bad in [
            quote!(for (x <- xs) println!("{}", x)),
            quote!(new Foo(1)),
            quote!(x.asInstanceOf[String]),
        ] {
            assert!(body(bad).is_err());
        }
        // Rust's own forms are left alone.
        assert!(
            body(quote!(for x in xs.iter() {
                let _ = x < -1;
            }))
            .is_ok()
        );
    }

    #[test]
    fn underscores_of_rust_closures_and_patterns_are_not_placeholders() {
        for code in [
            quote!(a.zip(b.iter().map(|_| 1))),
            quote!(v.fold((0, 0), |(n, _), x| (n + x, 0))),
            quote!(xs.retain(|x| matches!(x, Some(_)))),
            quote!(xs.iter().for_each(|(_, v)| println!("{v}"))),
        ] {
            assert_eq!(t(code.clone()), code.to_string());
        }
    }

    #[test]
    fn eta_expansion_and_println() {
        assert_eq!(
            t(quote!(xs.map(parse _))),
            quote!(xs.map(parse)).to_string()
        );
        assert!(t(quote!(rdd.foreach(println))).contains(":: dstream :: dsl :: println"));
    }
}
