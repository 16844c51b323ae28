//! Docker config parsing (`.dockerconfigjson` and legacy `.dockercfg`) never panics, and what
//! it writes back parses to the same keys and content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pull_secret_injector::registry::dockerconfig::DockerConfig;

fuzz_target!(|bytes: &[u8]| {
    for parsed in [
        DockerConfig::from_dockerconfigjson(bytes),
        DockerConfig::from_dockercfg(bytes),
    ] {
        if let Ok(config) = parsed {
            let written = config.to_dockerconfigjson();
            let again =
                DockerConfig::from_dockerconfigjson(&written).expect("what it writes parses");
            assert_eq!(
                again.keys().collect::<Vec<_>>(),
                config.keys().collect::<Vec<_>>()
            );
            assert_eq!(again.content_hash(), config.content_hash());
        }
    }
});
