//! Every column of every dataset is filled with a value of its own type, and a required
//! column never with NULL, for a row of each kind. `sinks::parquet`'s tests write these rows
//! and read every column back by name with DuckDB.

use super::{
    Kind, Table, Value,
    column::Column,
    connections, events,
    examples::{context, distinct_process, every_event},
    processes,
};
use crate::event::Body;

fn kind_of(value: &Value) -> Option<Kind> {
    Some(match value {
        Value::Null => return None,
        Value::Text(_) => Kind::Text,
        Value::UInt32(_) => Kind::UInt32,
        Value::UInt64(_) => Kind::UInt64,
        Value::Int32(_) => Kind::Int32,
        Value::Int64(_) => Kind::Int64,
        Value::Float64(_) => Kind::Float64,
        Value::Bool(_) => Kind::Bool,
        Value::Time(_) => Kind::Time,
        Value::TextList(_) => Kind::TextList,
    })
}

fn check<R, D>(columns: &[Column<R, D>], row: &R, derived: &D, what: &str) {
    let cx = context();
    for c in columns {
        let value = (c.fill)(row, derived, &cx);
        match kind_of(&value) {
            Some(kind) => assert_eq!(kind, c.kind, "{what}: column {} got {value:?}", c.name),
            None => assert!(c.nullable, "{what}: required column {} got NULL", c.name),
        }
    }
}

#[test]
fn every_column_gets_a_value_of_its_own_type_and_required_ones_never_null() {
    for ev in every_event() {
        let what = ev.kind_name();
        check(events().columns(), &ev, &super::events::derive(&ev), what);
        if matches!(ev.body, Body::Connection(_)) {
            check(
                connections().columns(),
                &ev,
                &super::connections::derive(&ev),
                what,
            );
        }
    }
    let p = distinct_process();
    check(
        processes().columns(),
        &p,
        &super::processes::derive(&p),
        "process",
    );
}

#[test]
fn names_are_unique_and_later_columns_are_nullable() {
    let all: [&dyn Table; 3] = [events(), processes(), connections()];
    for table in all {
        let schema = table.schema();
        let mut names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "{}: a column name twice", table.name());
        for f in schema.fields() {
            // Older files lack it: a reader fills NULL, so NULL must be a value it can have.
            assert!(
                !table.is_later(f.name()) || f.is_nullable(),
                "{}.{}",
                table.name(),
                f.name()
            );
        }
        assert_eq!(schema.fields().last().unwrap().name(), "host");
    }
    // The columns older files lack, as queries of old data rely on.
    assert!(events().is_later("exit_code") && !events().is_later("pid"));
    assert!(processes().is_later("step_key") && processes().is_later("read_bytes"));
    assert!(!processes().is_later("trace_id") && connections().is_later("host"));
}
