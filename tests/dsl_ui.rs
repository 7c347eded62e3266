//! The `stream!` DSL's compile-time errors: one case per file under `tests/ui/<category>/`,
//! each with its `.stderr` snapshot (whose primary span must be the user's offending token),
//! and pipelines that must compile under `tests/ui/pass/`. Snapshots are made with the pinned
//! toolchain (`rust-toolchain.toml`); refresh them with `TRYBUILD=overwrite cargo test --test
//! dsl_ui` and review the diff.

#[test]
fn dsl_compile_errors_and_passes() {
    let t = trybuild::TestCases::new();
    for category in [
        "syntax",
        "unknown_operation",
        "arity",
        "bindings",
        "plan_rules",
        "types",
    ] {
        t.compile_fail(format!("tests/ui/{category}/*.rs"));
    }
    t.pass("tests/ui/pass/*.rs");
}
