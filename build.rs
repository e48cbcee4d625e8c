//! Marks the build with `rapport_pg` when `RAPPORT_TEST_POSTGRES_URL` is set, so that the
//! PostgreSQL half of the test suite shows as "ignored, set RAPPORT_TEST_POSTGRES_URL"
//! instead of passing silently when no PostgreSQL server was given.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(rapport_pg)");
    println!("cargo::rerun-if-env-changed=RAPPORT_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("RAPPORT_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=rapport_pg");
    }
}
