//! auths keys as kubelet reads them: parsing never panics, a parsed key parses again to the same
//! normalised form, and matching it against any image never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pull_secret_injector::registry::image::ImageRef;
use pull_secret_injector::registry::keyring::{Location, RegistryKey, redact_key};

fuzz_target!(|input: (&str, &str)| {
    let (raw, image) = input;
    let _ = redact_key(raw);
    if let Ok(key) = RegistryKey::parse(raw) {
        let again = RegistryKey::parse(key.raw()).expect("a parsed key parses again");
        assert_eq!(again.normalized(), key.normalized());
        let _ = key.registry();
        if let Ok(image) = ImageRef::parse(image) {
            let location = Location::of_image(&image, image.name());
            let _ = key.matches(&location);
        }
    }
});
