//! The generated libraries are valid, consistent, laid out for lookups, and deterministic.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Date32Type;
use citybrain_datagen::{Config, PAGE_ROWS, generate, schema};
use citybrain_types::{CitizenId, CreditCode, Date};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Encoding;
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::collections::HashSet;
use std::path::Path;

fn read(root: &Path, dataset: &str) -> Vec<RecordBatch> {
    let mut files: Vec<_> = std::fs::read_dir(root.join(dataset))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
        })
        .collect()
}

fn strings(batches: &[RecordBatch], col: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(col).unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.value(i).to_owned())
        })
        .collect()
}

fn small(dir: &Path) -> Config {
    let mut c = Config::new(dir, 3_000);
    c.rows_per_file = 1_000;
    c.row_group_rows = 2_048;
    c
}

#[test]
fn libraries_are_valid_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&small(dir.path())).unwrap();
    let residents = &summary[0];
    assert_eq!(residents.rows, 3_000);
    assert_eq!(residents.files, 3, "split into files by key range");
    assert_eq!(summary[1].rows, 375, "one entity per eight residents");

    let people = read(dir.path(), "population/residents");
    let ids = strings(&people, "id_number");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted, unique keys");
    let genders = strings(&people, "gender");
    let mut row = 0;
    for b in &people {
        let births = b
            .column_by_name("birth_date")
            .unwrap()
            .as_primitive::<Date32Type>();
        for i in 0..b.num_rows() {
            let id = CitizenId::parse(&ids[row]).expect("valid check character");
            assert_eq!(id.birth_date(), Date::from_days(births.value(i)));
            assert_eq!(genders[row] == "男", id.is_male());
            row += 1;
        }
    }
    let towns: HashSet<_> = strings(&people, "town").into_iter().collect();
    assert!(
        towns.len() >= 5,
        "residents spread over the towns: {towns:?}"
    );

    let id_set: HashSet<_> = ids.iter().cloned().collect();
    let firms = read(dir.path(), "legal/entities");
    let codes = strings(&firms, "credit_code");
    assert!(codes.windows(2).all(|w| w[0] < w[1]));
    for c in &codes {
        CreditCode::parse(c).expect("valid credit code");
    }
    for rep in strings(&firms, "legal_rep_id") {
        assert!(id_set.contains(&rep), "legal representatives are residents");
    }

    let map = read(dir.path(), "map/addresses");
    let addr_ids: HashSet<_> = strings(&map, "address_id").into_iter().collect();
    for a in strings(&people, "address_id") {
        assert!(
            addr_ids.contains(&a),
            "household addresses exist in the map library"
        );
    }
    for b in &map {
        let lon = b
            .column_by_name("longitude")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        let lat = b
            .column_by_name("latitude")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        for i in 0..b.num_rows() {
            assert!((112.83..=113.27).contains(&lon.value(i)));
            assert!((22.82..=23.31).contains(&lat.value(i)));
        }
    }

    for (dataset, col) in [
        ("hrss/social_insurance", "id_number"),
        ("gov/e_licences", "holder_id"),
    ] {
        let keys = strings(&read(dir.path(), dataset), col);
        assert!(!keys.is_empty());
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{dataset} sorted");
        assert!(
            keys.iter().all(|k| id_set.contains(k)),
            "{dataset} joins residents"
        );
    }
    let code_set: HashSet<_> = codes.into_iter().collect();
    for c in strings(&read(dir.path(), "market/business_licences"), "credit_code") {
        assert!(code_set.contains(&c));
    }
}

#[test]
fn files_are_laid_out_for_point_lookups() {
    let dir = tempfile::tempdir().unwrap();
    generate(&small(dir.path())).unwrap();
    let path = dir.path().join("population/residents/part-00000.parquet");
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let meta = reader.metadata();
    let rg = meta.row_group(0);
    let id = rg.column(0);
    assert_eq!(id.column_path().string(), "id_number");
    assert!(
        !id.encodings()
            .any(|e| e == Encoding::PLAIN_DICTIONARY || e == Encoding::RLE_DICTIONARY),
        "no dictionary on the key column"
    );
    assert_eq!(id.compression(), parquet::basic::Compression::LZ4_RAW);
    assert!(id.statistics().is_some(), "key statistics written");
    // Page index present with pages of at most PAGE_ROWS rows.
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        std::fs::File::open(dir.path().join("population/residents/part-00000.parquet")).unwrap(),
        parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
    )
    .unwrap();
    let offsets = builder
        .metadata()
        .offset_index()
        .expect("offset index written");
    let pages = &offsets[0][0].page_locations;
    assert!(!pages.is_empty());
    let rows = rg.num_rows();
    let firsts: Vec<i64> = pages
        .iter()
        .map(|p| p.first_row_index)
        .chain([rows])
        .collect();
    assert!(firsts.windows(2).all(|w| w[1] - w[0] <= PAGE_ROWS as i64));
    let gender = rg
        .columns()
        .iter()
        .find(|c| c.column_path().string() == "gender")
        .unwrap();
    assert!(
        gender.dictionary_page_offset().is_some(),
        "low-cardinality columns keep a dictionary"
    );
}

#[test]
fn same_seed_same_bytes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ca = small(a.path());
    ca.persons = 800;
    let mut cb = ca.clone();
    cb.out = b.path().to_owned();
    generate(&ca).unwrap();
    generate(&cb).unwrap();
    for def in schema::all() {
        let mut files: Vec<_> = std::fs::read_dir(a.path().join(def.dataset))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        files.sort();
        assert!(!files.is_empty());
        for f in files {
            let x = std::fs::read(a.path().join(def.dataset).join(&f)).unwrap();
            let y = std::fs::read(b.path().join(def.dataset).join(&f)).unwrap();
            assert!(x == y, "{}/{:?} differs", def.dataset, f);
        }
    }
    let mut other = ca.clone();
    other.seed += 1;
    let c = tempfile::tempdir().unwrap();
    other.out = c.path().to_owned();
    generate(&other).unwrap();
    let x = std::fs::read(a.path().join("population/residents/part-00000.parquet")).unwrap();
    let y = std::fs::read(c.path().join("population/residents/part-00000.parquet")).unwrap();
    assert_ne!(x, y, "another seed, other data");
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = small(dir.path());
    c.persons = 100;
    generate(&c).unwrap();
    let err = generate(&c).unwrap_err().to_string();
    assert!(err.contains("already holds Parquet files"), "{err}");

    // A selection whose last table is occupied is refused before any table is written.
    let fresh = tempfile::tempdir().unwrap();
    let mut first = small(fresh.path());
    first.persons = 100;
    first.tables = vec!["market.business_licences".into()];
    generate(&first).unwrap();
    let mut more = first.clone();
    more.tables = vec![
        "population.residents".into(),
        "market.business_licences".into(),
    ];
    let err = generate(&more).unwrap_err().to_string();
    assert!(err.contains("'market/business_licences'"), "{err}");
    assert!(!fresh.path().join("population").exists(), "nothing written");
}

#[test]
fn pages_hold_the_rows_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    cfg.page_rows = 0;
    assert!(generate(&cfg).is_err(), "no rows per page is refused");
    cfg.page_rows = 100;
    generate(&cfg).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
        std::fs::File::open(dir.path().join("population/residents/part-00000.parquet")).unwrap(),
        parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
    )
    .unwrap();
    let rows = builder.metadata().row_group(0).num_rows();
    let offsets = builder.metadata().offset_index().expect("offset index");
    let firsts: Vec<i64> = offsets[0][0]
        .page_locations
        .iter()
        .map(|p| p.first_row_index)
        .chain([rows])
        .collect();
    let sizes: Vec<i64> = firsts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(rows > 100, "a row group of more than one page");
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert!(sizes.contains(&100), "{sizes:?}");
}

#[test]
fn a_table_written_alone_is_the_one_every_table_run_writes() {
    let (all, some) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let full = small(all.path());
    generate(&full).unwrap();
    for picked in [
        vec!["population.residents"],
        vec!["gov.e_licences", "market.business_licences"],
        vec!["hrss.social_insurance", "map.addresses"],
        vec!["legal.entities"],
    ] {
        let out = some.path().join(picked.join("+"));
        let mut only = full.clone();
        only.out = out.clone();
        only.tables = picked.iter().map(|t| t.to_string()).collect();
        let summary = generate(&only).unwrap();
        let names: Vec<_> = summary.iter().map(|t| t.name).collect();
        let expected: Vec<_> = schema::all()
            .into_iter()
            .map(|d| d.name)
            .filter(|n| picked.contains(n))
            .collect();
        assert_eq!(names, expected, "one summary per table written, in order");
        for def in schema::all() {
            let dir = out.join(def.dataset);
            if !picked.contains(&def.name) {
                assert!(!dir.exists(), "{} was not asked for", def.name);
                continue;
            }
            assert!(summary.iter().any(|t| t.name == def.name && t.rows > 0));
            let list = |d: &Path| {
                let mut files: Vec<_> = std::fs::read_dir(d)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                files.sort();
                files
            };
            let files = list(&dir);
            assert!(!files.is_empty());
            assert_eq!(files, list(&all.path().join(def.dataset)));
            for f in files {
                let x = std::fs::read(all.path().join(def.dataset).join(&f)).unwrap();
                let y = std::fs::read(dir.join(&f)).unwrap();
                assert!(x == y, "{}/{:?} differs when written alone", def.dataset, f);
            }
        }
    }
    let mut unknown = full.clone();
    unknown.out = some.path().join("unknown");
    unknown.tables = vec!["population.resident".into()];
    let err = generate(&unknown).unwrap_err().to_string();
    assert!(
        err.contains("unknown table 'population.resident'") && err.contains("legal.entities"),
        "{err}"
    );
    assert!(!unknown.out.exists(), "nothing written for a bad selection");
}
