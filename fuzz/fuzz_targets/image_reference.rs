//! Image references: parsing never panics, and the normalised form parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pull_secret_injector::registry::image::ImageRef;

fuzz_target!(|text: &str| {
    if let Ok(image) = ImageRef::parse(text) {
        let shown = image.to_string();
        let again = ImageRef::parse(&shown).expect("the normalised form parses");
        assert_eq!(again.to_string(), shown);
        assert_eq!(again.domain(), image.domain());
        assert_eq!(again.path(), image.path());
        assert_eq!(again.tag(), image.tag());
        assert_eq!(again.digest(), image.digest());
    }
});
