//! The layer extractor on one uncompressed layer tar applied twice (so
//! replacing, whiteouts and opaque directories meet earlier content).
#![no_main]

use jail::image::extract::Extractor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root dir");
    let mut ex = Extractor::new(&root).expect("extractor");
    if ex.apply(data).is_ok() {
        let _ = ex.apply(data);
    }
    let _ = ex.finish();
    // Nothing may land beside the root.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list temp dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("root")]);
});
