//! URL helpers shared by the clients and the master's proxy.

/// `text` percent-encoded for a URL query value (RFC 3986 unreserved characters and `/` kept).
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_and_non_ascii_bytes_are_encoded() {
        assert_eq!(
            super::query_value("sandboxes/a b/c&d=é"),
            "sandboxes/a%20b/c%26d%3D%C3%A9"
        );
        assert_eq!(super::query_value("a-b_c.d~e/f"), "a-b_c.d~e/f");
    }
}
