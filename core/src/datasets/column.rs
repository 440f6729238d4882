//! One column of a dataset, defined once: its name, type, nullability, the dataset version
//! that added it and how a row fills it. The Arrow schema, the builders, the row append and
//! the query side's rule for older files all read the same definition, so a column cannot be
//! added to one and not the others, nor filled into its neighbour's place.

use std::{borrow::Cow, sync::Arc};

use arrow_array::{
    ArrayRef,
    builder::{
        BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
        TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
    },
};
use arrow_schema::{DataType, Field, TimeUnit};

use crate::clock::Clock;

/// A column's type in Parquet (through Arrow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    UInt32,
    UInt64,
    Int32,
    Int64,
    Float64,
    Bool,
    /// Nanoseconds since the Unix epoch, UTC.
    Time,
    /// A list of texts (argv).
    TextList,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::UInt32 => DataType::UInt32,
            Kind::UInt64 => DataType::UInt64,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            Kind::TextList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }
}

/// One cell, as a column's fill function gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Text(Cow<'a, str>),
    UInt32(u32),
    UInt64(u64),
    Int32(i32),
    Int64(i64),
    Float64(f64),
    Bool(bool),
    /// Nanoseconds since the Unix epoch.
    Time(i64),
    TextList(&'a [String]),
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<$t> for Value<'_> {
            fn from(v: $t) -> Self {
                Value::$variant(v)
            }
        }
    )*};
}
value_from!(u32 => UInt32, u64 => UInt64, i32 => Int32, i64 => Int64, f64 => Float64, bool => Bool);

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// What every row of a file shares.
#[derive(Debug, Clone)]
pub struct RowContext {
    pub clock: Clock,
    pub run_id: String,
    /// `output.host`.
    pub host: String,
    /// The commit the run built (`vcs.ref.head.revision`), when known.
    pub revision: Option<String>,
}

impl RowContext {
    /// A kernel time as a cell of a [`Kind::Time`] column.
    pub fn time(&self, ktime_ns: u64) -> Value<'static> {
        Value::Time(self.clock.unix_ns(ktime_ns) as i64)
    }
}

/// Fills a column from a row `R` and what was derived from it once for all columns, `D`.
pub type Fill<R, D> = Box<dyn for<'r> Fn(&'r R, &'r D, &'r RowContext) -> Value<'r> + Send + Sync>;

pub struct Column<R, D> {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    /// The dataset version that added it: files written before lack it, and a reader takes
    /// it as NULL there (1: in the first files).
    pub since: u32,
    pub fill: Fill<R, D>,
}

impl<R, D> Column<R, D> {
    pub fn field(&self) -> Field {
        Field::new(self.name, self.kind.data_type(), self.nullable)
    }
}

/// The builder of one column.
pub enum Builder {
    Text(StringBuilder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampNanosecondBuilder),
    TextList(ListBuilder<StringBuilder>),
}

impl Builder {
    pub fn new(kind: Kind) -> Self {
        match kind {
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::UInt32 => Builder::UInt32(UInt32Builder::new()),
            Kind::UInt64 => Builder::UInt64(UInt64Builder::new()),
            Kind::Int32 => Builder::Int32(Int32Builder::new()),
            Kind::Int64 => Builder::Int64(Int64Builder::new()),
            Kind::Float64 => Builder::Float64(Float64Builder::new()),
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Time => Builder::Time(TimestampNanosecondBuilder::new()),
            Kind::TextList => Builder::TextList(ListBuilder::new(StringBuilder::new())),
        }
    }

    /// Appends `value`, returning its size; a value of another type than the column's is a
    /// defect in a table (every column is filled in the unit tests), appended as null.
    #[inline]
    pub fn append(&mut self, value: Value) -> usize {
        match (self, value) {
            (Builder::Text(b), Value::Text(v)) => {
                b.append_value(&v);
                v.len() + 4
            }
            (Builder::UInt32(b), Value::UInt32(v)) => {
                b.append_value(v);
                8
            }
            (Builder::UInt64(b), Value::UInt64(v)) => {
                b.append_value(v);
                8
            }
            (Builder::Int32(b), Value::Int32(v)) => {
                b.append_value(v);
                8
            }
            (Builder::Int64(b), Value::Int64(v)) => {
                b.append_value(v);
                8
            }
            (Builder::Float64(b), Value::Float64(v)) => {
                b.append_value(v);
                8
            }
            (Builder::Bool(b), Value::Bool(v)) => {
                b.append_value(v);
                8
            }
            (Builder::Time(b), Value::Time(v)) => {
                b.append_value(v);
                8
            }
            (Builder::TextList(b), Value::TextList(items)) => {
                let mut size = 4;
                for item in items {
                    b.values().append_value(item);
                    size += item.len() + 4;
                }
                b.append(true);
                size
            }
            (builder, value) => {
                debug_assert!(
                    matches!(value, Value::Null),
                    "a {value:?} in a column of another type"
                );
                builder.append_null();
                8
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Text(b) => b.append_null(),
            Builder::UInt32(b) => b.append_null(),
            Builder::UInt64(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::TextList(b) => b.append(false),
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::UInt32(b) => Arc::new(b.finish()),
            Builder::UInt64(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish().with_timezone("UTC")),
            Builder::TextList(b) => Arc::new(b.finish()),
        }
    }
}
