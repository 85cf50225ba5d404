use super::*;

macro_rules! host_case {
    ($pattern:expr, $host:expr, $port:expr, $want:expr) => {
        let p = HostPattern::parse($pattern).expect($pattern);
        let host = normalize_host($host);
        assert_eq!(
            p.matches(&host, $port),
            $want,
            "host pattern {:?} vs {:?}:{}",
            $pattern,
            $host,
            $port
        );
    };
}

#[test]
fn host_patterns() {
    host_case!("api.example.com", "api.example.com", 443, true);
    host_case!("api.example.com", "API.Example.COM", 443, true);
    host_case!("API.EXAMPLE.com", "api.example.com", 443, true);
    host_case!("api.example.com", "api.example.com.", 443, true);
    host_case!("api.example.com", "xapi.example.com", 443, false);
    host_case!("api.example.com", "api.example.co", 443, false);
    host_case!("*.example.com", "a.example.com", 443, true);
    host_case!("*.example.com", "a.b.example.com", 443, true);
    host_case!("*.example.com", "example.com", 443, false);
    host_case!("*.example.com", ".example.com", 443, false);
    host_case!("*.example.com", "a.example.org", 443, false);
    host_case!("*.example.com", "evil-example.com", 443, false);
    host_case!("api.*.com", "api.x.com", 443, true);
    host_case!("api.*.com", "api..com", 443, false);
    host_case!("api.*.com", "api.com", 443, false);
    host_case!("*", "anything.at.all", 8443, true);
    host_case!("api.example.com:8443", "api.example.com", 8443, true);
    host_case!("api.example.com:8443", "api.example.com", 443, false);
    host_case!("*.example.com:443", "a.example.com", 443, true);
    host_case!("*.example.com:443", "a.example.com", 80, false);
    host_case!("127.0.0.1", "127.0.0.1", 443, true);
    host_case!("127.0.0.1:9000", "127.0.0.1", 9000, true);
    host_case!("10.0.0.*", "10.0.0.7", 443, true);
    host_case!("[::1]", "[::1]", 443, true);
    host_case!("[::1]:8443", "::1", 8443, true);
    host_case!("[::1]:8443", "::1", 443, false);
    host_case!("::1", "::1", 443, true);
    // IDN hosts are matched in their ASCII (punycode) form, case-insensitively.
    host_case!("xn--bcher-kva.example", "XN--BCHER-KVA.example", 443, true);
    host_case!(
        "*.xn--bcher-kva.example",
        "api.xn--bcher-kva.example",
        443,
        true
    );
}

#[test]
fn host_pattern_errors() {
    assert_eq!(HostPattern::parse(""), Err(PatternError::Empty));
    assert!(matches!(
        HostPattern::parse("*.*.com"),
        Err(PatternError::TooManyWildcards(_))
    ));
    assert!(matches!(
        HostPattern::parse("a b.com"),
        Err(PatternError::BadHostChar(_))
    ));
    assert!(matches!(
        HostPattern::parse("a.com/x"),
        Err(PatternError::BadHostChar(_))
    ));
    assert!(matches!(
        HostPattern::parse("a.com:0"),
        Err(PatternError::BadPort(_))
    ));
    assert!(matches!(
        HostPattern::parse("a.com:99999"),
        Err(PatternError::BadPort(_))
    ));
    assert!(matches!(
        HostPattern::parse("a.com:x"),
        Err(PatternError::BadPort(_))
    ));
    assert!(matches!(
        HostPattern::parse("bücher.example"),
        Err(PatternError::BadHostChar(_))
    ));
}

#[test]
fn exact_host_is_exposed_for_indexing() {
    assert_eq!(
        HostPattern::parse("A.com").expect("valid").exact_host(),
        Some("a.com")
    );
    assert_eq!(
        HostPattern::parse("*.a.com").expect("valid").exact_host(),
        None
    );
}

macro_rules! path_case {
    ($pattern:expr, $path:expr, $want:expr) => {
        let p = PathPattern::parse($pattern).expect($pattern);
        assert_eq!(
            p.matches($path),
            $want,
            "path pattern {:?} vs {:?}",
            $pattern,
            $path
        );
    };
}

#[test]
fn path_patterns() {
    path_case!("*", "/", true);
    path_case!("*", "/anything/at/all?x=1", true);
    path_case!("/*", "/x", true);
    path_case!("/p/*", "/p", true);
    path_case!("/p/*", "/p/", true);
    path_case!("/p/*", "/p/a/b", true);
    path_case!("/p/*", "/px", false);
    path_case!("/p/*", "/p?x=1", true);
    path_case!("/p*", "/p", true);
    path_case!("/p*", "/px", true);
    path_case!("/p*", "/p/a", true);
    path_case!("/p*", "/q", false);
    path_case!("/v1/*/messages", "/v1/abc/messages", true);
    path_case!("/v1/*/messages", "/v1/abc/messages?limit=5", true);
    path_case!("/v1/*/messages", "/v1//messages", false);
    path_case!("/v1/*/messages", "/v1/a/b/messages", false);
    path_case!("/v1/*/messages", "/v1/abc/messages/extra", false);
    path_case!("/v1/*/messages/*/trash", "/v1/a/messages/b/trash", true);
    path_case!("/v1/messages", "/v1/messages", true);
    path_case!("/v1/messages", "/v1/messages?beta=true", true);
    path_case!("/v1/messages", "/v1/messages/", false);
    path_case!("/v1/messages", "/v1/messagesx", false);
}

#[test]
fn path_pattern_errors() {
    assert_eq!(PathPattern::parse(""), Err(PatternError::Empty));
    assert!(matches!(
        PathPattern::parse("v1/x"),
        Err(PatternError::PathNotAbsolute(_))
    ));
    assert!(matches!(
        PathPattern::parse("/x?a=1"),
        Err(PatternError::PathHasQuery(_))
    ));
}

#[test]
fn patterns_display_as_written() {
    for raw in ["*.example.com:443", "api.example.com", "[::1]:8443"] {
        let p = HostPattern::parse(raw).expect(raw);
        assert_eq!(HostPattern::parse(&p.to_string()), Ok(p));
    }
    for raw in ["*", "/p/*", "/p*", "/v1/*/messages", "/exact"] {
        assert_eq!(PathPattern::parse(raw).expect(raw).to_string(), raw);
    }
}

#[test]
fn a_host_pattern_of_dots_names_no_host() {
    // Found by the patterns fuzz target: ".." once compiled to an empty host.
    for dots in [".", "..", "...", " .. "] {
        assert_eq!(
            HostPattern::parse(dots),
            Err(PatternError::Empty),
            "{dots:?}"
        );
    }
    // One final dot goes, as it goes from requests (normalize_host).
    let p = HostPattern::parse("a..").expect("a.. is a.");
    assert!(p.matches(&normalize_host("a.."), 443));
    assert!(!p.matches("a", 443));
}
