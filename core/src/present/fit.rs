//! Fitting a table into a width: which columns stay, and how wide the column that says what a
//! row is (the command or step) may be. Our own rather than comfy-table's dynamic arrangement,
//! which shares the width out evenly: at 80 columns it cut every command to a few characters
//! and wrapped headers letter by letter while numeric columns kept their width.

/// The command (or step) column never gets narrower than this while a column can still go.
pub const READABLE: usize = 28;

/// Outside a terminal text cells are cut at this width (`--wide` keeps them whole): one
/// command line of 18 KB must not make every row of a file 18 KB wide.
pub const OFF_TERMINAL_TEXT: usize = 160;

/// Other text columns (a parent chain, an outcome) are cut at this width on a terminal.
const OTHER_TEXT: usize = 40;

/// The columns that go first when a table is too wide, most dispensable first: the timeline
/// bar, then the spread of durations (p50/p95 stay in CSV and JSON), then details a row can be
/// told without.
const DROP_ORDER: [&str; 22] = [
    "timeline",
    "sha256",
    "parent chain",
    "p95",
    "p50",
    "mean",
    "start",
    "ppid",
    "cancelled write",
    "minor faults",
    "voluntary switches",
    "involuntary switches",
    "major faults",
    "syscall read",
    "syscall write",
    "runs",
    "times",
    "written at",
    "exit",
    "binary",
    "process",
    "pid",
];

/// Characters a table with columns of these widths takes: `│ a │ b │`.
pub fn table_width(widths: impl IntoIterator<Item = usize>) -> usize {
    1 + widths.into_iter().map(|w| w + 3).sum::<usize>()
}

/// What fits: the columns to keep (indices, in order), the width of the flexible column, and
/// the headers of the columns left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub keep: Vec<usize>,
    pub widths: Vec<usize>,
    pub dropped: Vec<String>,
}

/// Fits columns whose widest cells are `natural` (headers included) into `width`. `flexible`
/// is the column that takes what is left; `text` says which columns hold text (capped at
/// [`OTHER_TEXT`]). Columns go in [`DROP_ORDER`], then numeric ones from the right, then text
/// ones from the right, until the flexible column has [`READABLE`] characters or only it and
/// one other column are left.
pub fn plan(
    headers: &[String],
    natural: &[usize],
    text: &[bool],
    flexible: Option<usize>,
    width: usize,
) -> Plan {
    let capped: Vec<usize> = natural
        .iter()
        .zip(text)
        .enumerate()
        .map(|(i, (&n, &t))| {
            if t && Some(i) != flexible {
                n.min(OTHER_TEXT.max(headers[i].chars().count()))
            } else {
                n
            }
        })
        .collect();
    let mut keep: Vec<usize> = (0..headers.len()).collect();
    let mut dropped = Vec::new();
    let fits = |keep: &[usize]| {
        let flex_need = flexible.map_or(0, |f| capped[f].min(READABLE));
        let rest = keep
            .iter()
            .filter(|&&i| Some(i) != flexible)
            .map(|&i| capped[i]);
        let flex = flexible.filter(|f| keep.contains(f)).map(|_| flex_need);
        table_width(rest.chain(flex)) <= width
    };
    while !fits(&keep) {
        let named = DROP_ORDER.iter().find_map(|name| {
            keep.iter()
                .position(|&i| headers[i] == *name && Some(i) != flexible)
        });
        let numeric = || {
            keep.iter()
                .rposition(|&i| !text[i] && Some(i) != flexible)
                .filter(|_| keep.len() > 2)
        };
        let any = || {
            keep.iter()
                .rposition(|&i| Some(i) != flexible)
                .filter(|_| keep.len() > 2)
        };
        let Some(at) = named.or_else(numeric).or_else(any) else {
            break;
        };
        dropped.push(headers[keep.remove(at)].clone());
    }
    let others: usize = keep
        .iter()
        .filter(|&&i| Some(i) != flexible)
        .map(|&i| capped[i] + 3)
        .sum();
    let widths = keep
        .iter()
        .map(|&i| {
            if Some(i) == flexible {
                let left = width.saturating_sub(1 + others + 3);
                capped[i].min(left.max(capped[i].min(READABLE)))
            } else {
                capped[i]
            }
        })
        .collect();
    Plan {
        keep,
        widths,
        dropped,
    }
}

/// `text` in at most `width` characters. Leading spaces (a tree's indentation) stay; then
/// paths lose their directories from the left (`…/load.py`), keeping the program's and the
/// script's names; what is still too long is cut at the end with `…`.
pub fn abbreviate(text: &str, width: usize) -> String {
    let length = text.chars().count();
    if length <= width {
        return text.to_owned();
    }
    let body = text.trim_start_matches(' ');
    let indent = &text[..text.len() - body.len()];
    let mut words: Vec<String> = body.split(' ').map(str::to_owned).collect();
    let measure = |words: &[String]| {
        indent.chars().count()
            + words.iter().map(|w| w.chars().count()).sum::<usize>()
            + words.len().saturating_sub(1)
    };
    for i in 0..words.len() {
        let over = measure(&words).saturating_sub(width);
        if over == 0 {
            break;
        }
        words[i] = shorten_path(&words[i], over);
    }
    let shorter = format!("{indent}{}", words.join(" "));
    if shorter.chars().count() <= width {
        return shorter;
    }
    let kept: String = shorter.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// `word` with leading directories replaced by `…` until it is `over` characters shorter or
/// only its file name is left (`/srv/ci/steps/load.py` → `…/steps/load.py` → `…/load.py`); a
/// word that is no path stays.
fn shorten_path(word: &str, over: usize) -> String {
    // The quote a shell-quoted word starts with stays in front of the ellipsis.
    let (quote, path) = match word.strip_prefix('\'') {
        Some(rest) => ("'", rest),
        None => ("", word),
    };
    let Some((dir, name)) = path.rsplit_once('/') else {
        return word.to_owned();
    };
    if dir.is_empty() || name.is_empty() || dir == "…" {
        return word.to_owned();
    }
    let length = word.chars().count();
    let mut rest = dir.trim_start_matches('…');
    loop {
        // Drop the leftmost directory that is left.
        rest = rest.trim_start_matches('/');
        rest = rest.split_once('/').map_or("", |(_, r)| r);
        let shorter = if rest.is_empty() {
            format!("{quote}…/{name}")
        } else {
            format!("{quote}…/{rest}/{name}")
        };
        if rest.is_empty() || length.saturating_sub(shorter.chars().count()) >= over {
            return shorter;
        }
    }
}

/// `text` word-wrapped at `width` characters (a word longer than that stays whole).
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        let length = word.chars().count();
        if line > 0 && line + 1 + length > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out += word;
        line += length;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_lose_directories_from_the_left_before_anything_is_cut() {
        let step =
            "/root/.pyenv/versions/3.11.7/bin/python3 /srv/ci/steps/transform.py --rows 1000";
        assert_eq!(
            abbreviate(step, 72),
            "…/versions/3.11.7/bin/python3 /srv/ci/steps/transform.py --rows 1000"
        );
        assert_eq!(
            abbreviate(step, 60),
            "…/3.11.7/bin/python3 /srv/ci/steps/transform.py --rows 1000"
        );
        assert_eq!(
            abbreviate(step, 42),
            "…/python3 …/steps/transform.py --rows 1000"
        );
        assert_eq!(abbreviate(step, 40), "…/python3 …/transform.py --rows 1000");
        assert_eq!(abbreviate(step, 20), "…/python3 …/transfo…");
        assert_eq!(
            abbreviate("    /bin/sh -c 'exit 3'", 18),
            "    …/sh -c 'exit…"
        );
        assert_eq!(abbreviate("'/a/b/c d' x", 9), "'…/c d' x");
        assert_eq!(abbreviate("short", 10), "short");
    }

    #[test]
    fn notes_wrap_at_the_width() {
        assert_eq!(wrap("aa bb cc dd", 5), "aa bb\ncc dd");
        assert_eq!(wrap("aaaaaaa b", 3), "aaaaaaa\nb");
        assert_eq!(wrap("a b", usize::MAX), "a b");
    }

    #[test]
    fn the_timeline_and_spread_go_before_the_command_gets_unreadable() {
        let headers = strings(&[
            "step",
            "runs",
            "processes",
            "total",
            "mean",
            "p50",
            "p95",
            "max",
        ]);
        let natural = [70, 4, 9, 9, 9, 9, 9, 9];
        let text = [true, false, false, false, false, false, false, false];
        let at80 = plan(&headers, &natural, &text, Some(0), 80);
        assert_eq!(at80.dropped, strings(&["p95", "p50", "mean"]));
        let width = table_width(at80.widths.iter().copied());
        assert!(width <= 80, "{at80:?} is {width} wide");
        assert!(at80.widths[0] >= READABLE, "{at80:?}");
        let at200 = plan(&headers, &natural, &text, Some(0), 200);
        assert!(at200.dropped.is_empty());
        assert_eq!(at200.widths[0], 70);
        // Nothing left to drop: the command keeps its readable width, the table overflows.
        let at20 = plan(&headers, &natural, &text, Some(0), 20);
        assert_eq!(at20.keep.len(), 2, "{at20:?}");
        assert_eq!(at20.widths[0], READABLE);
    }
}
