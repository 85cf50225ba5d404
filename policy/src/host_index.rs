//! Finds the items (secrets, rules) whose host pattern could match a host
//! without scanning them all: exact patterns by host, `*.suffix` patterns
//! by suffix (one probe per dot in the host), and only the rare others
//! (`*`, `api.*.com`) in a list that every lookup walks.

use std::collections::HashMap;

use crate::pattern::HostPattern;

#[derive(Debug, Default)]
pub(crate) struct HostIndex {
    exact: HashMap<String, Vec<usize>>,
    /// Keyed by the suffix after the `*`, which starts with a dot.
    by_suffix: HashMap<String, Vec<usize>>,
    others: Vec<usize>,
}

impl HostIndex {
    pub(crate) fn insert(&mut self, item: usize, pattern: &HostPattern) {
        if let Some(host) = pattern.exact_host() {
            self.exact.entry(host.to_owned()).or_default().push(item);
        } else if let Some(suffix) = pattern.dot_suffix() {
            self.by_suffix
                .entry(suffix.to_owned())
                .or_default()
                .push(item);
        } else {
            self.others.push(item);
        }
    }

    /// Items that may match `host` (normalized); the caller still matches
    /// each pattern, port included.
    pub(crate) fn candidates<'a>(&'a self, host: &'a str) -> impl Iterator<Item = usize> + 'a {
        let exact = self.exact.get(host).map(Vec::as_slice).unwrap_or(&[]);
        // `*` stands for at least one character, so the suffix starts after
        // the first byte.
        let suffixes = host
            .char_indices()
            .skip(1)
            .filter(|&(_, c)| c == '.')
            .filter_map(move |(i, _)| self.by_suffix.get(&host[i..]))
            .flatten();
        exact.iter().chain(suffixes).chain(&self.others).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(patterns: &[&str]) -> HostIndex {
        let mut index = HostIndex::default();
        for (i, p) in patterns.iter().enumerate() {
            index.insert(i, &HostPattern::parse(p).expect(p));
        }
        index
    }

    fn sorted(it: impl Iterator<Item = usize>) -> Vec<usize> {
        let mut v: Vec<usize> = it.collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn candidates_cover_every_pattern_that_can_match() {
        let patterns = [
            "api.test",
            "*.test",
            "*.b.test",
            "*",
            "api.*.com",
            "*x.test",
            "other.test",
            "*.c.test",
        ];
        let idx = index(&patterns);
        for host in [
            "api.test",
            "a.b.test",
            "x.test",
            "api.x.com",
            "b.test",
            "deep.a.b.test",
            "zzz",
        ] {
            let got = sorted(idx.candidates(host));
            for (i, p) in patterns.iter().enumerate() {
                if HostPattern::parse(p).expect(p).matches(host, 443) {
                    assert!(
                        got.contains(&i),
                        "{host}: {p} matches but was not a candidate ({got:?})"
                    );
                }
            }
        }
        // And the index narrows: other.test and *.c.test are no candidates for api.test.
        assert_eq!(sorted(idx.candidates("api.test")), [0, 1, 3, 4, 5]);
    }
}
