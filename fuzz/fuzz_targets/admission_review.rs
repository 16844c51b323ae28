//! The borrowing AdmissionReview reader against kube-core's parse (the reference): whenever the
//! reference answers, the reader gives the same answer, byte for byte; neither ever panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pull_secret_injector::admission;
use pull_secret_injector_fuzz as support;

fuzz_target!(|body: &[u8]| {
    let (catalog, state) = support::docker_hub();
    let new = admission::review(catalog, state, body);
    let old = admission::reference::review(catalog, state, body);
    if let Ok(old) = old {
        let new = new.expect("the reference answered, the reader refused");
        assert_eq!(
            String::from_utf8_lossy(&new.body),
            String::from_utf8_lossy(&old.body)
        );
    }
});
