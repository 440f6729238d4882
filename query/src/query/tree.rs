//! `tree --min-duration` for machines: the rows that stay when short processes are folded
//! (the table shows the folds as "(+N shorter)" rows; CSV and JSON leave them out).

use arrow::{
    array::{BooleanArray, RecordBatch},
    compute::{concat_batches, filter_record_batch},
    error::ArrowError,
};

use crate::present::table::{TreeRow, fold_plan, numbers};

pub fn without_shorter(batches: &[RecordBatch], min: f64) -> Result<Vec<RecordBatch>, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let all = concat_batches(&schema, batches)?;
    let depth = schema.index_of("depth")?;
    let duration = schema.index_of("duration_s")?;
    let depths: Vec<usize> = numbers(std::slice::from_ref(&all), depth)
        .into_iter()
        .map(|d| d as usize)
        .collect();
    let mut keep = vec![false; all.num_rows()];
    for row in fold_plan(&depths, &numbers(std::slice::from_ref(&all), duration), min) {
        if let TreeRow::Keep(i) = row {
            keep[i] = true;
        }
    }
    Ok(vec![filter_record_batch(&all, &BooleanArray::from(keep))?])
}
