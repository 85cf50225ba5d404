#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| onecli_policy::fuzzing::credentials(data));
