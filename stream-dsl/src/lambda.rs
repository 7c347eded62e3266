//! Scala's function literals, as Rust closures:
//!
//! | DSL | Rust |
//! |---|---|
//! | `x => e` | `move \|x\| e` |
//! | `(a, b) => e`, `(s: String) => e` | `move \|a, b\| e`, `move \|s: String\| e` |
//! | `_ + _`, `_ * 2`, `_.len()`, `_._2 > 0` | `move \|p0, p1\| p0 + p1`, ... (one parameter per `_`) |
//! | `{ case (k, v) => e }` (several cases allowed, with guards) | `move \|a\| match a { (k, v) => e }` |
//! | `{ x => stmts }` | `move \|x\| { stmts }` |
//! | any other expression (`getTags`, a closure) | itself |
//!
//! Bodies are translated by `crate::scala` (tuple accessors `._1` -> `.0` among them). Placeholders are the
//! `_` of the argument outside blocks, closures' bodies in braces and turbofish generics (so
//! `.collect::<Vec<_>>()` keeps its `_`).

use proc_macro2::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};

use crate::parse::span_of;

/// A function argument of an operation.
#[derive(Debug, Clone)]
pub enum Func {
    /// A literal with named parameters.
    Lambda {
        /// Its parameters, in order.
        params: Vec<Param>,
        /// Its body, as written.
        body: TokenStream,
        /// The whole literal, for errors.
        span: Span,
    },
    /// Scala's pattern-matching anonymous function: `{ case p => e ... }`.
    Cases {
        /// The `case` arms, as written.
        arms: TokenStream,
        /// The whole block, for errors.
        span: Span,
    },
    /// Any other expression whose value is a function.
    Value(TokenStream),
}

/// A named parameter: its pattern and optional type.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its pattern (a name, `_`, or a tuple).
    pub pat: TokenStream,
    /// Its type, when written (`x: i32`).
    pub ty: Option<TokenStream>,
}

fn is_punct(t: Option<&TokenTree>, c: char) -> bool {
    matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

fn is_arrow(tokens: &[TokenTree], i: usize) -> bool {
    matches!(tokens.get(i), Some(TokenTree::Punct(p)) if p.as_char() == '=' && p.spacing() == Spacing::Joint)
        && is_punct(tokens.get(i + 1), '>')
}

/// Reads an argument as a function.
pub fn func(tokens: &TokenStream) -> syn::Result<Func> {
    let toks: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let span = span_of(&toks);
    if toks.is_empty() {
        return Err(syn::Error::new(span, "expected a function here"));
    }
    // `{ case ... }` or `{ x => ... }`: Scala's block argument.
    if let [TokenTree::Group(g)] = toks.as_slice()
        && g.delimiter() == Delimiter::Brace
    {
        let inner: Vec<TokenTree> = g.stream().into_iter().collect();
        if matches!(inner.first(), Some(TokenTree::Ident(i)) if i == "case") {
            return cases(&inner, g.span());
        }
        if let Some(f) = arrow_lambda(&inner, true)? {
            return Ok(f);
        }
        return Ok(Func::Value(tokens.clone()));
    }
    if let Some(f) = arrow_lambda(&toks, false)? {
        return Ok(f);
    }
    let mut n = 0;
    // Functions nested in the expression first: a `_` belongs to the innermost argument.
    let translated = crate::scala::body(tokens.clone())?;
    let body = placeholders(translated, &mut n);
    if n > 0 {
        let params = (0..n)
            .map(|i| Param {
                pat: placeholder(i, span).into_token_stream(),
                ty: None,
            })
            .collect();
        return Ok(Func::Lambda { params, body, span });
    }
    // Translated: `f _` is `f`.
    Ok(Func::Value(body))
}

/// `x => body` or `(a, b: T) => body`; `block`: the body is a block's statements.
fn arrow_lambda(toks: &[TokenTree], block: bool) -> syn::Result<Option<Func>> {
    let params = match toks.first() {
        Some(TokenTree::Ident(i)) if is_arrow(toks, 1) => vec![Param {
            pat: TokenTree::Ident(i.clone()).into(),
            ty: None,
        }],
        Some(TokenTree::Group(g))
            if g.delimiter() == Delimiter::Parenthesis && is_arrow(toks, 1) =>
        {
            params(g.stream())?
        }
        _ => return Ok(None),
    };
    let rest = &toks[3..];
    let span = span_of(toks);
    if rest.is_empty() {
        return Err(syn::Error::new(
            toks[2].span(),
            "expected the function's body after `=>`",
        ));
    }
    let body: TokenStream = rest.iter().cloned().collect();
    let body = crate::scala::body(body)?;
    let body = if block {
        TokenTree::Group(Group::new(Delimiter::Brace, body)).into()
    } else {
        body
    };
    Ok(Some(Func::Lambda { params, body, span }))
}

/// The parameters of `(a, b: T, (k, v))`.
fn params(tokens: TokenStream) -> syn::Result<Vec<Param>> {
    let mut out = Vec::new();
    for arg in crate::parse::split_args(tokens) {
        let toks: Vec<TokenTree> = arg.tokens.into_iter().collect();
        let colon = toks.iter().enumerate().position(|(i, t)| {
            is_punct(Some(t), ':')
                && !is_punct(toks.get(i + 1), ':')
                && (i == 0 || !is_punct(toks.get(i - 1), ':'))
        });
        let (pat, ty) = match colon {
            Some(c) => (&toks[..c], Some(&toks[c + 1..])),
            None => (&toks[..], None),
        };
        if pat.is_empty() {
            return Err(syn::Error::new(arg.span, "expected a parameter name"));
        }
        if let Some(ty) = ty
            && ty.is_empty()
        {
            return Err(syn::Error::new(arg.span, "expected a type after `:`"));
        }
        let pat: TokenStream = pat.iter().cloned().collect();
        syn::parse::Parser::parse2(syn::Pat::parse_single, pat.clone()).map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("a parameter must be a name or a pattern: {e}"),
            )
        })?;
        out.push(Param {
            pat,
            ty: ty.map(|t| t.iter().cloned().collect()),
        });
    }
    Ok(out)
}

/// `case p [if g] => e` arms.
pub(crate) fn cases(inner: &[TokenTree], span: Span) -> syn::Result<Func> {
    let mut arms = TokenStream::new();
    let mut i = 0;
    while i < inner.len() {
        // inner[i] is `case`
        let case_span = inner[i].span();
        i += 1;
        let start = i;
        while i < inner.len() && !is_arrow(inner, i) {
            i += 1;
        }
        if i >= inner.len() {
            return Err(syn::Error::new(case_span, "expected `=>` in this `case`"));
        }
        if i == start {
            return Err(syn::Error::new(
                case_span,
                "expected a pattern after `case`",
            ));
        }
        let pat: TokenStream = inner[start..i].iter().cloned().collect();
        i += 2;
        let body_start = i;
        while i < inner.len() && !matches!(&inner[i], TokenTree::Ident(c) if c == "case") {
            i += 1;
        }
        if i == body_start {
            return Err(syn::Error::new(
                case_span,
                "expected an expression after `=>`",
            ));
        }
        let body = crate::scala::body(inner[body_start..i].iter().cloned().collect())?;
        // Scala names what a case does not use (`case (visitorId, url) => url`): no warning.
        arms.extend(quote! { #[allow(unused_variables, non_snake_case)] #pat => { #body } });
        arms.extend([TokenTree::Punct(Punct::new(',', Spacing::Alone))]);
    }
    Ok(Func::Cases { arms, span })
}

fn placeholder(i: usize, span: Span) -> Ident {
    Ident::new(&format!("__dsl_p{i}"), span)
}

/// Whether `toks[i]` is the `|` that opens a Rust closure's parameters (where an operand is
/// expected: first, or after an operator, `,` or `move`/`return`), not a bitwise or.
pub(crate) fn closure_starts_at(toks: &[TokenTree], i: usize) -> bool {
    is_punct(toks.get(i), '|')
        && match i.checked_sub(1).map(|k| &toks[k]) {
            None => true,
            Some(TokenTree::Punct(p)) => p.as_char() != '|' || i < 2,
            Some(TokenTree::Ident(id)) => id == "move" || id == "return",
            _ => false,
        }
}

/// Whether `toks[i]` is the arguments of a macro call (`matches!(x, Some(_))`): Rust, whose
/// `_` are patterns.
pub(crate) fn is_macro_args(toks: &[TokenTree], i: usize) -> bool {
    matches!(toks.get(i), Some(TokenTree::Group(_)))
        && i >= 2
        && is_punct(toks.get(i - 1), '!')
        && matches!(toks.get(i - 2), Some(TokenTree::Ident(_)))
}

/// Replaces the placeholders `_` of `tokens` by parameters, counting them in `n`. A Rust
/// closure (from its `|` to the end of the expression) and macro arguments are left as they
/// are: their `_` are patterns.
fn placeholders(tokens: TokenStream, n: &mut usize) -> TokenStream {
    let toks: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(toks.len());
    let mut angle = 0usize;
    for (i, t) in toks.iter().enumerate() {
        let prev_colons =
            i >= 2 && is_punct(toks.get(i - 1), ':') && is_punct(toks.get(i - 2), ':');
        if closure_starts_at(&toks, i) {
            out.extend(toks[i..].iter().cloned());
            break;
        }
        if is_macro_args(&toks, i) {
            out.push(t.clone());
            continue;
        }
        match t {
            TokenTree::Punct(p) if p.as_char() == '<' && (prev_colons || angle > 0) => {
                angle += 1;
                out.push(t.clone());
            }
            TokenTree::Punct(p) if p.as_char() == '>' && angle > 0 => {
                angle -= 1;
                out.push(t.clone());
            }
            TokenTree::Ident(id) if id == "_" && angle == 0 && !is_arrow(&toks, i + 1) => {
                out.push(TokenTree::Ident(placeholder(*n, id.span())));
                *n += 1;
            }
            TokenTree::Group(g) if g.delimiter() != Delimiter::Brace => {
                let mut ng = Group::new(g.delimiter(), placeholders(g.stream(), n));
                ng.set_span(g.span());
                out.push(TokenTree::Group(ng));
            }
            _ => out.push(t.clone()),
        }
    }
    out.into_iter().collect()
}

impl Func {
    /// The span to blame for the function.
    pub fn span(&self) -> Span {
        match self {
            Func::Lambda { span, .. } | Func::Cases { span, .. } => *span,
            Func::Value(t) => t
                .clone()
                .into_iter()
                .next()
                .map_or_else(Span::call_site, |t| t.span()),
        }
    }

    /// The number of parameters, when the literal says.
    pub fn arity(&self) -> Option<usize> {
        match self {
            Func::Lambda { params, .. } => Some(params.len()),
            _ => None,
        }
    }

    /// A Rust closure taking `arity` arguments of its own, plus `before` ignored parameters
    /// first and `after` last (a batch time the Scala form does not take).
    pub fn closure(&self, arity: usize, before: usize, after: usize) -> TokenStream {
        let span = self.span();
        let ignored =
            |n: usize| -> Vec<TokenStream> { (0..n).map(|_| quote_spanned!(span=> _)).collect() };
        let (pre, post) = (ignored(before), ignored(after));
        let args: Vec<Ident> = (0..arity)
            .map(|i| Ident::new(&format!("__dsl_a{i}"), span))
            .collect();
        // All parameters, the ignored ones around the function's own.
        let all = |own: Vec<TokenStream>| -> Vec<TokenStream> {
            pre.iter()
                .cloned()
                .chain(own)
                .chain(post.iter().cloned())
                .collect()
        };
        let own_args: Vec<TokenStream> = args.iter().map(|a| quote!(#a)).collect();
        match self {
            Func::Lambda { params, body, .. } => {
                let ps = all(params.iter().map(Param::tokens).collect());
                quote_spanned!(span=> move |#(#ps),*| #body)
            }
            Func::Cases { arms, .. } => {
                let scrutinee = if arity == 1 {
                    quote!(#(#args)*)
                } else {
                    quote!((#(#args),*))
                };
                let ps = all(own_args);
                quote_spanned!(span=> move |#(#ps),*| match #scrutinee { #arms })
            }
            Func::Value(v) => {
                if before == 0 && after == 0 {
                    v.clone()
                } else {
                    let ps = all(own_args);
                    quote_spanned!(span=> { let __dsl_f = #v; move |#(#ps),*| __dsl_f(#(#args),*) })
                }
            }
        }
    }

    /// The function applied to `args`, as an expression (so that inference sees the argument
    /// types before the body, which a closure bound to a `let` would not give it).
    pub fn applied(&self, args: &[TokenStream]) -> TokenStream {
        let span = self.span();
        match self {
            Func::Lambda { params, body, .. } if params.len() == args.len() => {
                let binds = params.iter().zip(args).map(|(p, a)| {
                    let pat = &p.pat;
                    match &p.ty {
                        Some(t) => quote_spanned!(span=> let #pat: #t = #a;),
                        None => quote_spanned!(span=> let #pat = #a;),
                    }
                });
                quote_spanned!(span=> { #(#binds)* #body })
            }
            Func::Cases { arms, .. } => {
                let scrutinee = if args.len() == 1 {
                    quote!(#(#args)*)
                } else {
                    quote!((#(#args),*))
                };
                quote_spanned!(span=> match #scrutinee { #arms })
            }
            _ => {
                let f = self.closure(args.len(), 0, 0);
                quote_spanned!(span=> (#f)(#(#args),*))
            }
        }
    }
}

impl Param {
    fn tokens(&self) -> TokenStream {
        let pat = &self.pat;
        match &self.ty {
            Some(t) => quote!(#pat: #t),
            None => pat.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closure(t: TokenStream, arity: usize) -> String {
        func(&t).unwrap().closure(arity, 0, 0).to_string()
    }

    #[test]
    fn arrow_lambdas() {
        assert_eq!(closure(quote!(t => (t, 1)), 1), "move | t | (t , 1)");
        assert_eq!(closure(quote!((a, b) => a + b), 2), "move | a , b | a + b");
        assert_eq!(
            closure(quote!((s: String, n: Vec<i64>) => s.len()), 2),
            "move | s : String , n : Vec < i64 > | s . len ()"
        );
        assert_eq!(
            closure(quote!({ x => let y = x; y }), 1),
            "move | x | { let y = x ; y }"
        );
    }

    #[test]
    fn placeholders_become_parameters() {
        assert_eq!(
            closure(quote!(_ + _), 2),
            "move | __dsl_p0 , __dsl_p1 | __dsl_p0 + __dsl_p1"
        );
        assert_eq!(
            closure(quote!(_._2 > 0), 1),
            "move | __dsl_p0 | __dsl_p0 . 1 > 0"
        );
        assert_eq!(
            closure(quote!(_.iter().collect::<Vec<_>>()), 1),
            "move | __dsl_p0 | __dsl_p0 . iter () . collect :: < Vec < _ >> ()"
        );
        assert_eq!(
            closure(quote!(max(_, 0)), 1),
            "move | __dsl_p0 | max (__dsl_p0 , 0)"
        );
        // No placeholder: a function value, as is.
        assert_eq!(closure(quote!(get_tags), 1), "get_tags");
    }

    #[test]
    fn cases_become_a_match() {
        assert_eq!(
            closure(quote!({ case (k, v) => v }), 1),
            "move | __dsl_a0 | match __dsl_a0 { # [allow (unused_variables , non_snake_case)] (k , v) => { v } , }"
        );
        assert_eq!(
            closure(quote!({ case (k, v) if v > 0 => 1 case _ => 0 }), 1),
            "move | __dsl_a0 | match __dsl_a0 { # [allow (unused_variables , non_snake_case)] (k , v) if v > 0 => { 1 } , # [allow (unused_variables , non_snake_case)] _ => { 0 } , }"
        );
    }

    #[test]
    fn tuple_accessors_are_one_based() {
        assert_eq!(
            crate::scala::body(quote!(x._1 + x._2._10))
                .unwrap()
                .to_string(),
            "x . 0 + x . 1 . 9"
        );
        assert_eq!(
            crate::scala::body(quote!(x._0 + x._foo))
                .unwrap()
                .to_string(),
            "x . _0 + x . _foo"
        );
    }

    #[test]
    fn application_binds_parameters_before_the_body() {
        let f = func(&quote!((w: &str) => w.len())).unwrap();
        assert_eq!(
            f.applied(&[quote!(x)]).to_string(),
            "{ let w : & str = x ; w . len () }"
        );
    }

    #[test]
    fn malformed_lambdas_are_errors_not_panics() {
        assert!(func(&quote!(x =>)).is_err());
        assert!(func(&quote!((1 + ) => x)).is_err());
        assert!(func(&quote!({ case => 1 })).is_err());
        assert!(func(&quote!({ case(a, b) })).is_err());
        assert!(func(&quote!()).is_err());
    }
}
