//! The data path below the gateway, each beside a naive baseline in the same group: a lookup by
//! key through the key index (one page read, by point reads and by the Arrow record reader)
//! against scanning the file, an absent key, a batch
//! match of 10,000 keys against one full scan with a hash set, and masking a column of names.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use citybrain_catalog::{ColumnManifest, TableManifest};
use citybrain_engine::{DataRoot, Engine};
use citybrain_governance::{Mask, mask_array};
use citybrain_types::{DataType, Library, Sensitivity, ShareType, UpdateCycle};
use criterion::{Criterion, criterion_group, criterion_main};
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
                .map(|i| {
                    let t = s.value(i);
                    let first: String = t.chars().take(1).collect();
                    format!("{first}{}", "*".repeat(t.chars().count() - 1))
                })
                .collect();
            StringArray::from(v)
        })
    });
    g.finish();
}

criterion_group!(benches, data_path);
criterion_main!(benches);
