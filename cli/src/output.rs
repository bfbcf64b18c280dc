//! User-facing output on stdout. A closed stdout (e.g. `proffer tasks | head`) is not an error:
//! the text is dropped instead of panicking as `println!` would.

use std::io::Write;

/// Writes `text` to stdout, adding a final newline if it lacks one.
pub fn text(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = if text.ends_with('\n') {
        out.write_all(text.as_bytes())
    } else {
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
    };
    // Nothing useful can be done when stdout is gone; the logs (stderr) still work.
    let _ = result.and_then(|()| out.flush());
}
