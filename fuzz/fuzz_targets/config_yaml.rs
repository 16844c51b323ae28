//! The config reader (raw YAML or a ConfigMap, multi-document) never panics, and every problem
//! it reports has words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pull_secret_injector::config::Config;

fuzz_target!(|text: &str| {
    if let Err(e) = Config::from_yaml(text) {
        assert!(!e.to_string().is_empty());
    }
});
