//! The data path below the gateway, each beside a naive baseline in the same group: a lookup by
//! key through the key index (one page read, by point reads and by the Arrow record reader)
//! against scanning the file, an absent key, a batch
//! match of 10,000 keys against one full scan with a hash set, masking a column of names, and a
//! grant's policy (row filter, then granted columns masked) applied to a batch of residents:
//! compiled once, compiled on every call, and written out row by row.

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::Date32Type;
use citybrain_catalog::{ColumnManifest, TableManifest};
use citybrain_engine::{DataRoot, Engine};
use citybrain_governance::{Grant, GrantColumn, GrantTerms, Mask, Mode, Policy, mask_array};
use citybrain_types::{DataType, Library, Sensitivity, ShareType, UpdateCycle};
use criterion::{Criterion, criterion_group, criterion_main};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PERSONS: u64 = 200_000;

fn residents() -> TableManifest {
    let col = |name: &str, data_type| ColumnManifest {
        name: name.into(),
        title: name.into(),
        data_type,
        share_type: ShareType::Conditional,
        sensitivity: Sensitivity::Personal,
        description: String::new(),
    };
    TableManifest {
        name: "population.residents".into(),
        resource_code: "bench".into(),
        title: "residents".into(),
        title_en: "residents".into(),
        provider_code: "public-security".into(),
        provider_name: "public security".into(),
        summary: "bench".into(),
        library: Library::Population,
        classification: "bench".into(),
        key_column: Some("id_number".into()),
        update_cycle: UpdateCycle::Daily,
        share_type: ShareType::Conditional,
        share_condition: "bench".into(),
        share_method: "api".into(),
        open_to_public: false,
        open_condition: String::new(),
        dataset: Some("population/residents".into()),
        publish_date: None,
        related_resource_codes: vec![],
        columns: vec![
            col("id_number", DataType::String),
            col("name", DataType::String),
            col("birth_date", DataType::Date),
            col("town", DataType::String),
        ],
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

/// Every row of the dataset whose id_number is in `keys`, by reading everything.
fn scan(dir: &Path, keys: &HashSet<&str>) -> usize {
    let mut n = 0;
    for f in files(dir) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b: RecordBatch = b.unwrap();
            let ids = b.column_by_name("id_number").unwrap().as_string::<i32>();
            n += (0..ids.len())
                .filter(|i| keys.contains(ids.value(*i)))
                .count();
        }
    }
    n
}

fn data_path(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    citybrain_datagen::generate(&citybrain_datagen::Config::new(tmp.path(), PERSONS)).unwrap();
    let dir = tmp.path().join("population/residents");
    let engine = Engine::new(DataRoot::local(tmp.path()).unwrap());
    let table = residents();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let all = citybrain_datagen::read_strings(&dir, "id_number").unwrap();
    let key = all[all.len() / 3].clone();
    let absent = format!("{}0", all[all.len() / 2]);
    // Warm the footer cache and the key index.
    assert_eq!(
        rt.block_on(engine.lookup(&table, std::slice::from_ref(&key)))
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        1
    );

    // The same key index, each page's rows decoded by the Arrow record reader.
    let record = Engine::new(DataRoot::local(tmp.path()).unwrap()).without_point_reads();
    rt.block_on(record.lookup(&table, std::slice::from_ref(&key)))
        .unwrap();

    let mut g = c.benchmark_group("lookup_one_key");
    g.bench_function("hub_key_index", |b| {
        b.iter(|| rt.block_on(engine.lookup(&table, std::slice::from_ref(black_box(&key)))))
    });
    g.bench_function("record_reader", |b| {
        b.iter(|| rt.block_on(record.lookup(&table, std::slice::from_ref(black_box(&key)))))
    });
    g.sample_size(10);
    g.bench_function("naive_full_scan", |b| {
        b.iter(|| scan(&dir, &HashSet::from([black_box(key.as_str())])))
    });
    g.finish();

    let mut g = c.benchmark_group("lookup_absent_key");
    g.bench_function("hub_key_index", |b| {
        b.iter(|| rt.block_on(engine.lookup(&table, std::slice::from_ref(black_box(&absent)))))
    });
    g.sample_size(10);
    g.bench_function("naive_full_scan", |b| {
        b.iter(|| scan(&dir, &HashSet::from([black_box(absent.as_str())])))
    });
    g.finish();

    let batch: Vec<String> = all
        .iter()
        .step_by(all.len() / 10_000)
        .take(10_000)
        .cloned()
        .collect();
    let set: HashSet<&str> = batch.iter().map(String::as_str).collect();
    let mut g = c.benchmark_group("batch_match_10000");
    g.sample_size(10);
    g.bench_function("hub_key_index", |b| {
        b.iter(|| rt.block_on(engine.lookup(&table, black_box(&batch))))
    });
    g.bench_function("naive_full_scan_hash_set", |b| {
        b.iter(|| scan(&dir, black_box(&set)))
    });
    g.finish();

    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..1024).map(|i| format!("陈{}", ["小明", "伟", "建国"][i % 3])),
    ));
    let mut g = c.benchmark_group("mask_first_char_1024");
    g.bench_function("hub", |b| {
        b.iter(|| mask_array(&Mask::FirstChar, black_box(&names), b"k").unwrap())
    });
    g.bench_function("naive_format", |b| {
        b.iter(|| {
            let s = black_box(&names).as_string::<i32>();
            let v: Vec<String> = (0..s.len())
                .map(|i| first_char_by_format(s.value(i)))
                .collect();
            StringArray::from(v)
        })
    });
    g.finish();

    policy(c, &dir, &table);
}

/// A name's first character and a `*` for each other, by string formatting: the naive mask.
fn first_char_by_format(t: &str) -> String {
    let first: String = t.chars().take(1).collect();
    format!("{first}{}", "*".repeat(t.chars().count().saturating_sub(1)))
}

/// Days from 1970-01-01 to 1990-01-01, the row filter's bound.
const FROM_1990: i32 = 7305;

/// A read grant of the four benchmark columns to residents of one town born from 1990, ID
/// numbers keeping their first 6 and last 4 characters, names their first.
fn grant() -> Grant {
    let col = |name: &str, mask| GrantColumn {
        name: name.into(),
        mask,
    };
    Grant {
        id: "grant-bench".into(),
        application_id: "app-bench".into(),
        table: "population.residents".into(),
        consumer_dept: "civil-affairs".into(),
        terms: GrantTerms {
            columns: vec![
                col("id_number", Some(Mask::Keep { first: 6, last: 4 })),
                col("name", Some(Mask::FirstChar)),
                col("birth_date", None),
                col("town", None),
            ],
            row_filter: Some("town = '桂城街道' AND birth_date >= DATE '1990-01-01'".into()),
            purpose: "bench".into(),
            mode: Mode::Read,
            max_calls_per_day: 0,
            max_rows_per_day: 0,
            min_group_size: 0,
        },
        created_at: 0,
        expires_at: u64::MAX,
        revoked_at: None,
        revoke_reason: String::new(),
    }
}

/// The grant above written out by hand, one row at a time: the filter as two comparisons, each
/// kept value masked into a string of its own.
fn apply_by_row(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> RecordBatch {
    let ids = batch.column(0).as_string::<i32>();
    let names = batch.column(1).as_string::<i32>();
    let births = batch.column(2).as_primitive::<Date32Type>();
    let towns = batch.column(3).as_string::<i32>();
    let (mut id, mut name, mut birth, mut town) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..batch.num_rows() {
        let kept = towns.is_valid(i)
            && towns.value(i) == "桂城街道"
            && births.is_valid(i)
            && births.value(i) >= FROM_1990;
        if !kept {
            continue;
        }
        id.push(ids.is_valid(i).then(|| {
            let chars: Vec<char> = ids.value(i).chars().collect();
            let n = chars.len();
            if n <= 10 {
                "*".repeat(n)
            } else {
                let middle = "*".repeat(n - 10);
                let first: String = chars[..6].iter().collect();
                let last: String = chars[n - 4..].iter().collect();
                format!("{first}{middle}{last}")
            }
        }));
        name.push(
            names
                .is_valid(i)
                .then(|| first_char_by_format(names.value(i))),
        );
        birth.push(births.value(i));
        town.push(towns.value(i).to_owned());
    }
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(id)),
            Arc::new(StringArray::from(name)),
            Arc::new(Date32Array::from(birth)),
            Arc::new(StringArray::from(town)),
        ],
    )
    .unwrap()
}

/// A grant's policy applied to 8,192 residents: the hub compiles it once per grant; compiling
/// it on every call, or writing it out row by row, are what it is measured against.
fn policy(c: &mut Criterion, dir: &Path, table: &TableManifest) {
    let file = std::fs::File::open(&files(dir)[0]).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    // The manifest's columns, which the files hold in the same order.
    let columns = ProjectionMask::columns(
        builder.parquet_schema(),
        table.columns.iter().map(|c| c.name.as_str()),
    );
    let raw = builder
        .with_projection(columns)
        .with_batch_size(8192)
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let compiled = Policy::compile(grant(), table, b"bench secret").unwrap();
    let batch =
        RecordBatch::try_new(compiled.table_schema().clone(), raw.columns().to_vec()).unwrap();
    // The three ways give the same answer, of some rows but not all.
    let answer = compiled.apply(&batch).unwrap();
    assert!(answer.num_rows() > 0 && answer.num_rows() < batch.num_rows());
    assert_eq!(apply_by_row(&batch, compiled.output_schema()), answer);

    let mut g = c.benchmark_group("policy_apply_8192");
    g.bench_function("hub_compiled", |b| {
        b.iter(|| compiled.apply(black_box(&batch)).unwrap())
    });
    g.bench_function("compile_every_call", |b| {
        b.iter(|| {
            Policy::compile(grant(), table, b"bench secret")
                .unwrap()
                .apply(black_box(&batch))
                .unwrap()
        })
    });
    g.bench_function("naive_by_row", |b| {
        b.iter(|| apply_by_row(black_box(&batch), compiled.output_schema()))
    });
    g.finish();
}

criterion_group!(benches, data_path);
criterion_main!(benches);
