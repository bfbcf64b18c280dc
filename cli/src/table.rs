//! Plain-text tables with left-aligned, space-padded columns.

/// Renders `rows` under `headers`; columns are as wide as their widest cell, separated by two
/// spaces, with no trailing spaces. Rows shorter than the header are padded with empty cells.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_to_the_widest_cell() {
        let rows = vec![
            vec!["a1".to_owned(), "host-long".to_owned(), "x".to_owned()],
            vec!["agent-22".to_owned(), "h".to_owned()],
        ];
        let text = render(&["ID", "HOST", "OK"], &rows);
        let want = "ID        HOST       OK\n\
                    a1        host-long  x\n\
                    agent-22  h\n";
        assert_eq!(text, want);
    }

    #[test]
    fn header_only_and_unicode_width() {
        assert_eq!(render(&["A", "B"], &[]), "A  B\n");
        let rows = vec![vec!["é".to_owned(), "1".to_owned()]];
        assert_eq!(render(&["NAME", "N"], &rows), "NAME  N\né     1\n");
    }
}
