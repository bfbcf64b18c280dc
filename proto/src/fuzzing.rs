//! Support for the fuzz tests of every crate (no test framework needed here): how many cases
//! to run, which seed, and byte-level mutations of valid inputs.
//!
//! Each crate's `fuzz_tests` are proptests with a fixed seed and a small default number of
//! cases, so `cargo test --workspace` stays quick; `PROFFER_FUZZ_CASES=100000` runs every
//! target longer and `PROFFER_FUZZ_SEED=N` explores another part of the input space.

/// The number of cases a fuzz target runs: `PROFFER_FUZZ_CASES` when set to a number, else
/// `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROFFER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The seed of a fuzz target: `PROFFER_FUZZ_SEED` when set to a number, else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("PROFFER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Fragments that tend to break parsers: delimiters of the formats we read, numbers at the
/// edges of their types, non-ASCII and control characters, YAML/TOML/JSON syntax.
pub const TOKENS: &[&str] = &[
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\0",
    ":",
    ";",
    ",",
    "=",
    "-",
    "/",
    "//",
    ".",
    "..",
    "../",
    "*",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "{{",
    "}}",
    "\"",
    "'",
    "\\",
    "#",
    "&",
    "!",
    "|",
    ">",
    "? ",
    "- ",
    ": ",
    "---",
    "...",
    "~",
    "null",
    "true",
    "no",
    "0",
    "-0",
    "1",
    "-1",
    "0.0005",
    "1e-9",
    "1e12",
    "1e300",
    "-1e300",
    "1e400",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "+1",
    "0x10",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "é",
    "ß",
    "\u{200b}",
    "\u{fffd}",
    "\u{1f600}",
    "\u{7f}",
    "\u{1b}",
    "%00",
    "%2e%2e",
    "cpus",
    "mem",
    "disk",
    "ports",
    "gpus",
    "dynamic",
    "static",
    "sandboxes",
];

/// Applies byte-level mutations to `text`. Each op is `(kind, at, len, token)`: positions
/// and lengths are taken modulo the current length (and moved to a character boundary), so
/// any op list from a random generator applies; the result is always valid UTF-8.
///
/// Kinds (mod 8): insert a token, delete a range, duplicate a range, replace a range with a
/// token, swap two ranges' order (rotate), truncate, replace one character with a random one,
/// repeat the whole text.
pub fn mutate(text: &str, ops: &[(u8, usize, usize, u32)]) -> String {
    let mut s = text.to_string();
    for &(kind, at, len, token) in ops {
        let at = boundary(&s, at % (s.len() + 1));
        let end = boundary(&s, (at + len % 16).min(s.len()));
        let tok = TOKENS[token as usize % TOKENS.len()];
        match kind % 8 {
            0 => s.insert_str(at, tok),
            1 => s.replace_range(at..end, ""),
            2 => {
                let piece = s[at..end].to_string();
                s.insert_str(end, &piece);
            }
            3 => s.replace_range(at..end, tok),
            4 => {
                let (a, b) = s.split_at(at);
                s = format!("{b}{a}");
            }
            5 => s.truncate(at),
            6 => {
                let c = char::from_u32(token % 0x3000).unwrap_or('\u{fffd}');
                let next = boundary(&s, (at + 1).min(s.len()));
                let next = if next == at && at < s.len() {
                    s[at..].chars().next().map_or(at, |c| at + c.len_utf8())
                } else {
                    next
                };
                s.replace_range(at..next, &c.to_string());
            }
            _ => {
                if s.len() < 4096 {
                    s = s.repeat(2);
                }
            }
        }
    }
    s
}

/// The largest character boundary of `s` at or before `i`.
fn boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_apply_anywhere_and_stay_utf8() {
        let seeds = ["", "a", "é€😀", "cpus:1;mem:2"];
        for seed in seeds {
            for kind in 0..8u8 {
                for at in [0, 1, 2, 3, 7, 100] {
                    for len in [0, 1, 5, 15] {
                        for token in [0, 5, 77, 0x2fff, u32::MAX] {
                            let out = mutate(seed, &[(kind, at, len, token)]);
                            assert!(out.len() <= seed.len() * 2 + 64, "{out:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(mutate("abc", &[]), "abc");
        assert_eq!(mutate("abc", &[(1, 1, 1, 0)]), "ac");
        assert_eq!(mutate("abc", &[(5, 2, 0, 0)]), "ab");
    }
}
