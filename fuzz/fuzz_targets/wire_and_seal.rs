#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| onecli_policy::fuzzing::wire_and_seal(data));
