#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| stackfed_fuzz::http_range(data));
