//! Test guest: a perfectly valid component that is not an HTTP handler (it exports `add`),
//! so the host must refuse it at start and say what is missing.
wit_bindgen::generate!({
    inline: "package test:not-http; world calculator { export add: func(a: u32, b: u32) -> u32; }",
});

struct Calculator;

impl Guest for Calculator {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
}

export!(Calculator);
