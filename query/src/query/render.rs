//! A result as people read it (an aligned table fitted to the terminal) or as machines do (CSV,
//! JSON with explicit nulls).

use arrow::array::RecordBatch;

use super::{Format, QueryError, first_line};
use crate::present::table::{self, TableOptions};

/// Renders the batches; an empty result still shows its columns.
pub fn render(
    batches: &[RecordBatch],
    format: Format,
    options: TableOptions,
) -> Result<String, QueryError> {
    let render_error = |e: arrow::error::ArrowError| QueryError::Sql(first_line(&e.to_string()));
    match format {
        Format::Table => Ok(table::render(batches, options)),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    writer.write(b).map_err(render_error)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                // Explicit nulls: every row has every column, as tools expect.
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                writer.write_batches(&refs).map_err(render_error)?;
                writer.finish().map_err(render_error)?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}
