//! The committed corpora (`corpus/<target>/`) and every crash found so far
//! (`regressions/<target>/`) through the fuzz targets' checks, on stable and without
//! libFuzzer: `cargo test --no-default-features` (CI's fallback when nightly is
//! missing; also run by `scripts/fuzz`).

use std::path::Path;

fn run(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap_or_default();
            check(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no corpus for {target}");
}

macro_rules! corpora {
    ($($t:ident),* $(,)?) => {$(
        #[test]
        fn $t() {
            run(stringify!($t), stackfed_fuzz::$t);
        }
    )*};
}

corpora!(
    swift_path,
    swift_listing_query,
    swift_listing_body,
    http_range,
    glance_query,
    glance_image,
    slo_manifest,
    slo_stored,
    bulk_delete,
    config_toml,
);
