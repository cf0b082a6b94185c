#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| stackfed_fuzz::swift_listing_query(data));
