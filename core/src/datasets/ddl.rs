//! The datasets as tables of other engines — Athena, Trino, Spark, ClickHouse — over the bucket
//! the agents upload to (`PREFIX/DATASET/host=H/date=D/*.parquet`). Generated from the column
//! tables, so that the DDL in `docs/tables.md` is the schema the sink writes; a test holds the
//! two together.

use arrow_schema::{DataType, Field};

use super::{Table, connections, events, files, findings, processes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Athena,
    Trino,
    Spark,
    ClickHouse,
}

impl Engine {
    const ALL: [Engine; 4] = [Self::Athena, Self::Trino, Self::Spark, Self::ClickHouse];

    fn title(self) -> &'static str {
        match self {
            Self::Athena => "Athena (and Hive)",
            Self::Trino => "Trino (Hive connector)",
            Self::Spark => "Spark SQL",
            Self::ClickHouse => "ClickHouse",
        }
    }

    /// The engine's type for a column the sink writes as `t`.
    fn type_of(self, t: &DataType) -> String {
        let ch = self == Self::ClickHouse;
        match t {
            DataType::Utf8 if ch => "String".into(),
            DataType::Utf8 if self == Self::Trino => "varchar".into(),
            DataType::Utf8 => "STRING".into(),
            DataType::UInt32 if ch => "UInt32".into(),
            DataType::UInt64 if ch => "UInt64".into(),
            DataType::Int64 if ch => "Int64".into(),
            // Unsigned 32-bit values fit a signed 64-bit column; 64-bit ones a decimal.
            DataType::UInt32 | DataType::Int64 => "BIGINT".into(),
            DataType::UInt64 => "DECIMAL(20, 0)".into(),
            DataType::Int32 if ch => "Int32".into(),
            DataType::Int32 => "INTEGER".into(),
            DataType::Float64 if ch => "Float64".into(),
            DataType::Float64 => "DOUBLE".into(),
            DataType::Boolean if ch => "Bool".into(),
            DataType::Boolean => "BOOLEAN".into(),
            DataType::Timestamp(..) => match self {
                Self::ClickHouse => "DateTime64(9, 'UTC')".into(),
                Self::Trino => "timestamp(9) with time zone".into(),
                // Spark reads nanosecond timestamps as their number (nanosAsLong).
                Self::Spark => "BIGINT".into(),
                Self::Athena => "TIMESTAMP".into(),
            },
            DataType::List(item) => {
                let inner = self.type_of(item.data_type());
                match self {
                    Self::ClickHouse => format!("Array({inner})"),
                    Self::Trino => format!("array({inner})"),
                    _ => format!("ARRAY<{inner}>"),
                }
            }
            other => format!("/* {other} */ STRING"),
        }
    }

    fn column(self, f: &Field) -> String {
        let t = self.type_of(f.data_type());
        match self {
            Self::ClickHouse if f.is_nullable() && !matches!(f.data_type(), DataType::List(_)) => {
                format!("    `{}` Nullable({t})", f.name())
            }
            Self::ClickHouse => format!("    `{}` {t}", f.name()),
            Self::Trino => format!("    \"{}\" {t}", f.name()),
            _ => format!("    `{}` {t}", f.name()),
        }
    }
}

/// The table `pipetrace_DATASET` over `PREFIX/DATASET/` for `engine`.
pub fn ddl(engine: Engine, table: &dyn Table) -> String {
    let name = table.name();
    let schema = table.schema();
    // The hive partitions carry `host` (and `date`): the files' own `host` column is the same.
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| engine == Engine::ClickHouse || f.name() != "host")
        .map(|f| engine.column(f))
        .collect();
    let columns = columns.join(",\n");
    let location = format!("s3://BUCKET/PREFIX/{name}/");
    match engine {
        Engine::Athena => format!(
            "CREATE EXTERNAL TABLE pipetrace_{name} (\n{columns}\n)\n\
             PARTITIONED BY (`host` STRING, `date` STRING)\n\
             STORED AS PARQUET\n\
             LOCATION '{location}'\n\
             TBLPROPERTIES (\n    'projection.enabled' = 'true',\n    \
             'projection.host.type' = 'injected',\n    \
             'projection.date.type' = 'date',\n    \
             'projection.date.format' = 'yyyy-MM-dd',\n    \
             'projection.date.range' = '2024-01-01,NOW',\n    \
             'storage.location.template' = '{location}host=${{host}}/date=${{date}}/'\n);\n"
        ),
        Engine::Trino => format!(
            "CREATE TABLE hive.pipetrace.{name} (\n{columns},\n    \"host\" varchar,\n    \"date\" varchar\n)\n\
             WITH (\n    external_location = '{location}',\n    format = 'PARQUET',\n    \
             partitioned_by = ARRAY['host', 'date']\n);\n\
             CALL hive.system.sync_partition_metadata('pipetrace', '{name}', 'ADD');\n"
        ),
        Engine::Spark => format!(
            "CREATE TABLE pipetrace_{name} (\n{columns},\n    `host` STRING,\n    `date` STRING\n)\n\
             USING parquet\n\
             PARTITIONED BY (`host`, `date`)\n\
             LOCATION '{}';\n\
             MSCK REPAIR TABLE pipetrace_{name};\n",
            location.replacen("s3://", "s3a://", 1)
        ),
        Engine::ClickHouse => format!(
            "CREATE TABLE pipetrace_{name} (\n{columns}\n)\n\
             ENGINE = S3('https://ENDPOINT/BUCKET/PREFIX/{name}/*/*/*.parquet', 'Parquet');\n"
        ),
    }
}

/// `docs/tables.md`: every dataset's table for every engine.
pub fn document() -> String {
    let tables: [&dyn Table; 5] = [events(), processes(), connections(), findings(), files()];
    let mut out = String::from(
        "# The bucket as tables of other engines\n\n\
         Generated from the dataset definitions (`core/src/datasets/`) by `core/src/datasets/ddl.rs`;\n\
         a test fails when this file and the schema the sink writes differ. Replace `BUCKET/PREFIX`\n\
         (and `ENDPOINT`) with the `url` (and `endpoint`) of `[output.object_store]`.\n\n\
         - The objects are `PREFIX/DATASET/host=H/date=YYYY-MM-DD/*.parquet`: the hive partitions\n  \
         carry `host` and `date` (the files' own `host` column holds the same value).\n\
         - Columns added in later versions are missing from older files: every engine here reads\n  \
         them as NULL (they are nullable).\n\
         - Times are UTC timestamps in nanoseconds. Spark reads them as their number of\n  \
         nanoseconds (`spark.sql.legacy.parquet.nanosAsLong=true`, Spark 3.2.4 and later);\n  \
         Athena at millisecond precision.\n\
         - Run `otel-pipetrace compact` on the bucket (nightly) so that engines read few objects.\n\
         - Tested here: DuckDB (`otel-pipetrace query`, the DuckDB CLI) and Daft on Ray\n  \
         (`tests/tests/engines.rs`) read the bucket as is.\n",
    );
    for engine in Engine::ALL {
        out.push_str(&format!("\n## {}\n", engine.title()));
        for table in tables {
            out.push_str(&format!("\n```sql\n{}```\n", ddl(engine, table)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PIPETRACE_WRITE_DOCS=1` writes the file instead of comparing.
    #[test]
    fn docs_tables_md_is_the_schema_the_sink_writes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tables.md");
        let want = document();
        if std::env::var_os("PIPETRACE_WRITE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/tables.md is out of date: PIPETRACE_WRITE_DOCS=1 cargo test -p pipetrace-core docs_tables"
        );
    }

    #[test]
    fn a_column_of_each_kind_maps_to_the_engines_types() {
        let t = processes();
        let athena = ddl(Engine::Athena, t);
        assert!(athena.contains("`argv` ARRAY<STRING>") && athena.contains("`start` TIMESTAMP"));
        let columns = athena.split("PARTITIONED BY").next().unwrap();
        assert!(!columns.contains("`host`"), "{athena}");
        let ch = ddl(Engine::ClickHouse, t);
        assert!(ch.contains("`pid` UInt32") && ch.contains("`exit_code` Nullable(Int32)"));
        assert!(ddl(Engine::Spark, t).contains("`start` BIGINT"));
    }
}
