//! Query results as a table for people: durations and sizes in units, numbers right-aligned,
//! the tree indented with a timeline bar, fitted to the terminal (see `fit`).
//! Column names say the kind: `*_s` are seconds, `*_bytes` bytes, `*_percent` a share.

use arrow::{
    array::{Array, Float64Array, RecordBatch},
    datatypes::DataType,
    util::display::{ArrayFormatter, FormatOptions},
};
use comfy_table::{CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::{fit, units};

#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// The terminal's width; `None` when the output is not a terminal.
    pub terminal_width: Option<u16>,
    /// Show every value whole, however wide.
    pub wide: bool,
    /// A tree (columns `depth` and `duration_s`): processes shorter than this many seconds,
    /// with their subtrees, become one "(+N shorter)" row per run of siblings.
    pub fold_shorter_than: Option<f64>,
}

/// A row of a tree after folding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeRow {
    Keep(usize),
    /// `count` processes left out at `depth`.
    Folded {
        depth: usize,
        count: usize,
    },
}

/// Which rows of a tree (in tree order, with depths) stay: a row shorter than `min` seconds
/// goes with its whole subtree; consecutive siblings that go are counted in one row.
pub fn fold_plan(depths: &[usize], durations: &[f64], min: f64) -> Vec<TreeRow> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, usize)> = None; // (depth, count)
    let mut i = 0;
    while i < depths.len() {
        let depth = depths[i];
        // A pending fold closes at the first row that is not a later sibling's subtree.
        if let Some((d, count)) = pending
            && depth <= d
            && !(depth == d && durations[i] < min)
        {
            out.push(TreeRow::Folded { depth: d, count });
            pending = None;
        }
        if durations[i] < min && depth > 0 {
            let mut end = i + 1;
            while end < depths.len() && depths[end] > depth {
                end += 1;
            }
            let count = end - i;
            pending = match pending {
                Some((d, c)) if d == depth => Some((d, c + count)),
                Some((d, c)) => {
                    out.push(TreeRow::Folded { depth: d, count: c });
                    Some((depth, count))
                }
                None => Some((depth, count)),
            };
            i = end;
            continue;
        }
        out.push(TreeRow::Keep(i));
        i += 1;
    }
    if let Some((depth, count)) = pending {
        out.push(TreeRow::Folded { depth, count });
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Seconds,
    Bytes,
    Percent,
    Number,
    Text,
}

fn kind(name: &str, data_type: &DataType) -> Kind {
    let numeric = data_type.is_numeric();
    if numeric && name.ends_with("_s") {
        Kind::Seconds
    } else if numeric && name.ends_with("_bytes") {
        Kind::Bytes
    } else if numeric && name.ends_with("_percent") {
        Kind::Percent
    } else if numeric {
        Kind::Number
    } else {
        Kind::Text
    }
}

/// The header people read: the unit moves from the name into the values.
fn header(name: &str, kind: Kind) -> String {
    let bare = match kind {
        Kind::Seconds => name.strip_suffix("_s"),
        Kind::Bytes => name.strip_suffix("_bytes"),
        Kind::Percent => name.strip_suffix("_percent"),
        _ => None,
    };
    bare.unwrap_or(name).replace('_', " ")
}

fn column_index(batches: &[RecordBatch], name: &str) -> Option<usize> {
    batches.first()?.schema().index_of(name).ok()
}

/// Column `c` of every batch as numbers (0 for nulls).
pub fn numbers(batches: &[RecordBatch], c: usize) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| {
            let column = floats(b.column(c).as_ref());
            (0..b.num_rows()).map(move |r| number(column.as_ref(), r).unwrap_or(0.0))
        })
        .collect()
}

/// A numeric column as floats, cast once (a cell-by-cell cast costs a kernel call per cell).
fn floats(array: &dyn Array) -> Option<Float64Array> {
    let cast = arrow::compute::cast(array, &DataType::Float64).ok()?;
    cast.as_any().downcast_ref::<Float64Array>().cloned()
}

fn number(floats: Option<&Float64Array>, row: usize) -> Option<f64> {
    floats.filter(|f| !f.is_null(row)).map(|f| f.value(row))
}

/// Columns the table leads with and how each cell reads.
struct Prepared {
    headers: Vec<String>,
    kinds: Vec<Kind>,
    rows: Vec<Vec<String>>,
}

fn prepare(batches: &[RecordBatch]) -> Prepared {
    let Some(first) = batches.first() else {
        return Prepared {
            headers: Vec::new(),
            kinds: Vec::new(),
            rows: Vec::new(),
        };
    };
    let schema = first.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let kinds: Vec<Kind> = schema
        .fields()
        .iter()
        .map(|f| kind(f.name(), f.data_type()))
        .collect();
    let depth_col = names.iter().position(|n| *n == "depth");
    let options = FormatOptions::default().with_null("");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<Option<ArrayFormatter>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        let numeric: Vec<Option<Float64Array>> = batch
            .columns()
            .iter()
            .zip(&kinds)
            .map(|(c, k)| (*k != Kind::Text).then(|| floats(c.as_ref())).flatten())
            .collect();
        for r in 0..batch.num_rows() {
            let depth = depth_col
                .and_then(|c| number(numeric[c].as_ref(), r))
                .unwrap_or(0.0) as usize;
            let mut row = Vec::with_capacity(names.len());
            for (c, column) in batch.columns().iter().enumerate() {
                let value = if column.is_null(r) {
                    String::new()
                } else {
                    let n = number(numeric[c].as_ref(), r);
                    match kinds[c] {
                        Kind::Seconds => n.map(units::duration),
                        Kind::Bytes => n.map(|b| units::bytes(b as i64)),
                        Kind::Percent => n.map(|p| format!("{p:.1} %")),
                        _ => None,
                    }
                    .unwrap_or_else(|| {
                        formatters[c]
                            .as_ref()
                            .map(|f| f.value(r).to_string())
                            .unwrap_or_default()
                    })
                };
                // The tree's first text column is indented by depth.
                let value = if depth_col.is_some() && names[c] == "process" {
                    format!("{}{value}", "  ".repeat(depth))
                } else {
                    value
                };
                row.push(value);
            }
            rows.push(row);
        }
    }
    Prepared {
        headers: names
            .iter()
            .zip(&kinds)
            .map(|(n, k)| header(n, *k))
            .collect(),
        kinds,
        rows,
    }
}

/// Bar cells drawn inside this many characters.
const TIMELINE_WIDTH: usize = 16;

/// A text bar per row: where in the run (`start_s` from its start) and for how long
/// (`duration_s`) the row's process ran.
fn timeline(batches: &[RecordBatch]) -> Option<Vec<String>> {
    let schema = batches.first()?.schema();
    let start = schema.index_of("start_s").ok()?;
    let duration = schema.index_of("duration_s").ok()?;
    let spans: Vec<(f64, f64)> = numbers(batches, start)
        .into_iter()
        .zip(numbers(batches, duration))
        .collect();
    let end = spans.iter().map(|(s, d)| s + d).fold(0.0f64, f64::max);
    if end <= 0.0 {
        return None;
    }
    let scale = TIMELINE_WIDTH as f64 / end;
    Some(
        spans
            .iter()
            .map(|(s, d)| {
                let from = ((s * scale).floor() as usize).min(TIMELINE_WIDTH - 1);
                let to = (((s + d) * scale).ceil() as usize).clamp(from + 1, TIMELINE_WIDTH);
                let mut bar = String::with_capacity(TIMELINE_WIDTH * 3);
                bar.extend(std::iter::repeat_n('·', from));
                bar.extend(std::iter::repeat_n('█', to - from));
                bar.extend(std::iter::repeat_n('·', TIMELINE_WIDTH - to));
                bar
            })
            .collect(),
    )
}

/// The table, and a line with the row count; `depth` is shown as indentation, not a column.
pub fn render(batches: &[RecordBatch], options: TableOptions) -> String {
    let mut prepared = prepare(batches);
    let mut bars = if options.terminal_width.is_some() {
        timeline(batches)
    } else {
        None
    };
    if let (Some(min), Some(depth_col), Some(duration_col)) = (
        options.fold_shorter_than,
        prepared.headers.iter().position(|h| h == "depth"),
        column_index(batches, "duration_s"),
    ) {
        let depths: Vec<usize> = prepared
            .rows
            .iter()
            .map(|r| r[depth_col].parse().unwrap_or(0))
            .collect();
        let durations = numbers(batches, duration_col);
        let process_col = prepared.headers.iter().position(|h| h == "process");
        let width = prepared.headers.len();
        let mut rows = Vec::new();
        let mut kept_bars = Vec::new();
        for row in fold_plan(&depths, &durations, min) {
            match row {
                TreeRow::Keep(i) => {
                    rows.push(std::mem::take(&mut prepared.rows[i]));
                    kept_bars.push(bars.as_ref().map(|b| b[i].clone()).unwrap_or_default());
                }
                TreeRow::Folded { depth, count } => {
                    let mut cells = vec![String::new(); width];
                    cells[process_col.unwrap_or(0)] =
                        format!("{}(+{count} shorter)", "  ".repeat(depth));
                    rows.push(cells);
                    kept_bars.push(String::new());
                }
            }
        }
        prepared.rows = rows;
        if bars.is_some() {
            bars = Some(kept_bars);
        }
    }
    let row_count = prepared.rows.len();
    // A tree shows depth as indentation and the parent by position: both columns go.
    if prepared.headers.iter().any(|h| h == "depth") {
        for name in ["depth", "ppid"] {
            if let Some(c) = prepared.headers.iter().position(|h| h == name) {
                prepared.headers.remove(c);
                prepared.kinds.remove(c);
                for row in &mut prepared.rows {
                    row.remove(c);
                }
            }
        }
    }
    // The bar only where a person looks at it.
    if let Some(bars) = bars {
        let at = prepared
            .headers
            .iter()
            .position(|h| h == "start")
            .map_or(prepared.headers.len(), |i| i);
        prepared.headers.insert(at, "timeline".into());
        prepared.kinds.insert(at, Kind::Text);
        for (row, bar) in prepared.rows.iter_mut().zip(bars) {
            row.insert(at, bar);
        }
    }
    let note = fit_columns(&mut prepared, options);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(prepared.headers.clone());
    // The cells are fitted already (`fit_columns`): comfy-table only draws them.
    table.set_content_arrangement(ContentArrangement::Disabled);
    for row in prepared.rows {
        table.add_row(row);
    }
    for (i, kind) in prepared.kinds.iter().enumerate() {
        if *kind != Kind::Text
            && let Some(column) = table.column_mut(i)
        {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = format!(
        "{table}\n({row_count} row{})\n",
        if row_count == 1 { "" } else { "s" }
    );
    if !note.is_empty() {
        out += &fit::wrap(
            &note,
            options.terminal_width.map_or(usize::MAX, usize::from),
        );
        out.push('\n');
    }
    out
}

/// Characters of column `c`'s widest cell, its header included.
fn natural_width(prepared: &Prepared, c: usize) -> usize {
    prepared
        .rows
        .iter()
        .map(|r| &r[c])
        .chain(std::iter::once(&prepared.headers[c]))
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
}

/// Fits the table to the terminal (columns left out in a fixed order, the command or step
/// column abbreviated, never below a readable width) or, outside a terminal, cuts long text
/// cells at a fixed width; `--wide` leaves everything whole. What was left out, for the
/// closing line.
fn fit_columns(prepared: &mut Prepared, options: TableOptions) -> String {
    if options.wide {
        return String::new();
    }
    let text_column = |name: &str| {
        prepared
            .headers
            .iter()
            .zip(&prepared.kinds)
            .position(|(h, k)| h == name && *k == Kind::Text)
    };
    let flexible = text_column("command")
        .or_else(|| text_column("step"))
        .or_else(|| prepared.kinds.iter().rposition(|k| *k == Kind::Text));
    let Some(width) = options.terminal_width else {
        for row in &mut prepared.rows {
            for (cell, kind) in row.iter_mut().zip(&prepared.kinds) {
                if *kind == Kind::Text {
                    *cell = fit::abbreviate(cell, fit::OFF_TERMINAL_TEXT);
                }
            }
        }
        return String::new();
    };
    let natural: Vec<usize> = (0..prepared.headers.len())
        .map(|c| natural_width(prepared, c))
        .collect();
    let text: Vec<bool> = prepared.kinds.iter().map(|k| *k == Kind::Text).collect();
    let mut plan = fit::plan(&prepared.headers, &natural, &text, flexible, width.into());
    // A tree whose `process` column must go keeps its shape: the indentation (and the
    // "(+N shorter)" rows) move to the command.
    if let (Some(process), Some(command)) = (text_column("process"), flexible)
        && plan.dropped.iter().any(|d| d == "process")
    {
        for row in &mut prepared.rows {
            let cell = std::mem::take(&mut row[process]);
            let indent = &cell[..cell.len() - cell.trim_start_matches(' ').len()];
            row[command] = if row[command].is_empty() {
                cell.clone()
            } else {
                format!("{indent}{}", row[command])
            };
        }
        let mut natural = natural;
        natural[command] = natural_width(prepared, command);
        natural[process] = 0;
        plan = fit::plan(&prepared.headers, &natural, &text, flexible, width.into());
        if !plan.dropped.iter().any(|d| d == "process") {
            // Empty now: it goes all the same.
            let at = plan.keep.iter().position(|&c| c == process).unwrap_or(0);
            plan.keep.remove(at);
            plan.widths.remove(at);
            plan.dropped.push("process".into());
        }
    }
    let pick = |values: &[String]| -> Vec<String> {
        plan.keep.iter().map(|&c| values[c].clone()).collect()
    };
    prepared.headers = pick(&prepared.headers);
    prepared.kinds = plan.keep.iter().map(|&c| prepared.kinds[c]).collect();
    for row in &mut prepared.rows {
        let kept = pick(row);
        *row = kept
            .into_iter()
            .zip(&plan.widths)
            .map(|(cell, &w)| fit::abbreviate(&cell, w))
            .collect();
    }
    if plan.dropped.is_empty() {
        String::new()
    } else {
        format!(
            "Left out to fit {width} columns: {} (--wide shows every column).",
            plan.dropped.join(", ")
        )
    }
}
