#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| onecli_gateway::fuzzing::guidance_rewrite(data));
