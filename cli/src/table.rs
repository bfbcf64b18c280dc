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

/// Resources in Mesos text form with scalars rounded for display: at or above 100 to whole
/// numbers (`mem:11540.5` → `mem:11541`), below to at most two decimals (`cpus:0.333` →
/// `cpus:0.33`). Ranges, sets and anything that is not a number are left alone.
pub fn round_resources(text: &str) -> String {
    text.split(';')
        .map(|part| match part.rsplit_once(':') {
            Some((name, value)) => match value.parse::<f64>() {
                Ok(v) if v.is_finite() => format!("{name}:{}", round_scalar(v)),
                _ => part.to_string(),
            },
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn round_scalar(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{:.0}", v.round())
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod round_tests {
    use super::round_resources;

    #[test]
    fn scalars_are_rounded_for_display() {
        let table = [
            (
                "cpus:1;disk:126449.5;mem:11540.5;ports:[31000-31499]",
                "cpus:1;disk:126450;mem:11541;ports:[31000-31499]",
            ),
            (
                "cpus:0.333;mem(web,dynamic=ops):32.25",
                "cpus:0.33;mem(web,dynamic=ops):32.25",
            ),
            (
                "disk(web,dynamic=ops)[vol1:data]:100",
                "disk(web,dynamic=ops)[vol1:data]:100",
            ),
            ("cpus:0.1", "cpus:0.1"),
            ("", ""),
            ("gpus:2;disks:{a,b}", "gpus:2;disks:{a,b}"),
        ];
        for (input, want) in table {
            assert_eq!(round_resources(input), want, "{input}");
        }
    }
}
