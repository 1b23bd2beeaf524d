//! Small horizontal bar charts as inline SVG, drawn on the server (no script, no style
//! attribute: the page's Content-Security-Policy allows neither). Every chart has a title and
//! an `aria-label`; the numbers are in the picture as text, so it reads without colour.

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// `bars`: label and count, largest first.
pub fn bars(title: &str, bars: &[(String, i64)]) -> String {
    let width = 420;
    let label_w = 190;
    let row = 24;
    let height = (bars.len().max(1) * row + 8) as i64;
    let max = bars.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
    let summary: Vec<String> = bars.iter().map(|(l, n)| format!("{l}: {n}")).collect();
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" \
         aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        escape(&format!("{title}: {}", summary.join("; "))),
        escape(title)
    );
    if bars.is_empty() {
        svg.push_str("<text x=\"4\" y=\"18\" font-size=\"13\" fill=\"#555\">no data yet</text>");
    }
    for (i, (label, n)) in bars.iter().enumerate() {
        let y = i * row + 4;
        let w = ((width - label_w - 50) as i64 * n / max).max(2);
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"end\" fill=\"#222\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"#2f6f9f\" rx=\"2\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"13\" fill=\"#222\">{n}</text>",
            label_w - 6,
            y + 15,
            escape(&cut(label, 26)),
            row - 6,
            label_w as i64 + w + 6,
            y + 15,
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_escaped_and_counts_shown() {
        let svg = super::bars("OS", &[("<b>&".into(), 3), ("b".into(), 1)]);
        assert!(svg.contains("&lt;b&gt;&amp;") && !svg.contains("<b>"));
        assert!(
            svg.contains(">3</text>") && svg.contains("aria-label=\"OS: &lt;b&gt;&amp;: 3; b: 1\"")
        );
    }
}
