//! Table data is counted from the files, and a bad file takes down only its own table.

use citybrain_catalog::{ColumnManifest, TableManifest};
use citybrain_engine::{DataProblem, DataRoot, Engine, Error};
use citybrain_types::{DataType, Library, Sensitivity, ShareType, UpdateCycle};

fn manifest(name: &str, dataset: &str, columns: &[(&str, DataType)]) -> TableManifest {
    TableManifest {
        name: name.into(),
        resource_code: "T-1".into(),
        title: "t".into(),
        title_en: "t".into(),
        provider_code: "test".into(),
        provider_name: "test".into(),
        summary: "t".into(),
        library: Library::Population,
        classification: String::new(),
        key_column: None,
        update_cycle: UpdateCycle::Daily,
        share_type: ShareType::Unconditional,
        share_condition: String::new(),
        share_method: String::new(),
        open_to_public: false,
        open_condition: String::new(),
        dataset: Some(dataset.into()),
        publish_date: None,
        related_resource_codes: vec![],
        columns: columns
            .iter()
            .map(|(n, t)| ColumnManifest {
                name: (*n).into(),
                title: "c".into(),
                data_type: *t,
                share_type: ShareType::Unconditional,
                sensitivity: Sensitivity::Public,
                description: String::new(),
            })
            .collect(),
    }
}

fn setup() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = citybrain_datagen::Config::new(dir.path(), 2_000);
    cfg.rows_per_file = 700;
    citybrain_datagen::generate(&cfg).unwrap();
    let engine = Engine::new(DataRoot::parse(&format!("file://{}", dir.path().display())).unwrap());
    (dir, engine)
}

#[tokio::test]
async fn counts_come_from_the_files() {
    let (_dir, engine) = setup();
    let residents = manifest(
        "population.residents",
        "population/residents",
        &[
            ("id_number", DataType::String),
            ("birth_date", DataType::Date),
        ],
    );
    let info = engine.table_data(&residents).await.unwrap();
    assert_eq!(info.records, 2_000);
    assert_eq!(info.files, 3);
    assert!(info.bytes > 0);
    // ID numbers are 18 characters; dates are not text.
    assert_eq!(
        info.text_bytes_per_value.into_iter().collect::<Vec<_>>(),
        [("id_number".to_owned(), 18)]
    );
    let info = engine.table_data(&residents).await.unwrap();
    // Cached footers give the same answer.
    assert_eq!(engine.table_data(&residents).await.unwrap(), info);
}

#[tokio::test]
async fn text_held_in_dictionary_pages_alone_is_named() {
    let (_dir, engine) = setup();
    let residents = manifest(
        "population.residents",
        "population/residents",
        &[
            ("id_number", DataType::String),
            ("town", DataType::String),
            ("gender", DataType::String),
            ("birth_date", DataType::Date),
        ],
    );
    // Towns and genders are written with a dictionary in every file; ID numbers as plain
    // values; dates are not text.
    let info = engine.table_data(&residents).await.unwrap();
    assert_eq!(
        info.dictionary_text.into_iter().collect::<Vec<_>>(),
        ["gender", "town"]
    );
}

#[tokio::test]
async fn a_long_dictionary_is_not_named() {
    use arrow::array::{RecordBatch, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("test").join("codes");
    std::fs::create_dir_all(&files).unwrap();
    // 20,000 distinct codes, each twice: every page dictionary-encoded, the dictionary about
    // 400 KB. Three kinds: a dictionary of a few bytes.
    let rows = 40_000u64;
    let code = |i: u64| format!("{:016x}", (i % 20_000).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let codes = StringArray::from_iter_values((0..rows).map(code));
    let kinds = StringArray::from_iter_values((0..rows).map(|i| ["a", "b", "c"][(i % 3) as usize]));
    let batch = RecordBatch::try_from_iter([
        ("code", Arc::new(codes) as _),
        ("kind", Arc::new(kinds) as _),
    ])
    .unwrap();
    let file = std::fs::File::create(files.join("part-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let engine = Engine::new(DataRoot::parse(&format!("file://{}", dir.path().display())).unwrap());
    let table = manifest(
        "test.codes",
        "test/codes",
        &[("code", DataType::String), ("kind", DataType::String)],
    );
    let info = engine.table_data(&table).await.unwrap();
    assert_eq!(
        info.dictionary_text.into_iter().collect::<Vec<_>>(),
        ["kind"]
    );
}

#[tokio::test]
async fn a_corrupt_file_fails_only_its_table() {
    let (dir, engine) = setup();
    let residents = manifest(
        "population.residents",
        "population/residents",
        &[("id_number", DataType::String)],
    );
    let entities = manifest(
        "legal.entities",
        "legal/entities",
        &[("credit_code", DataType::String)],
    );
    engine.table_data(&residents).await.unwrap();

    // Overwrite the footer of the second file, as a failed copy would.
    let victim = dir.path().join("population/residents/part-00001.parquet");
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 20..].fill(0x55);
    std::fs::write(&victim, &bytes).unwrap();

    let err = engine.table_data(&residents).await.unwrap_err();
    match &err {
        Error::Unavailable { table, problem } => {
            assert_eq!(table, "population.residents");
            assert_eq!(*problem, DataProblem::Corrupt { index: 2, files: 3 });
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        !text.contains(dir.path().to_str().unwrap()),
        "no server paths: {text}"
    );
    assert!(
        engine.table_data(&entities).await.is_ok(),
        "other tables keep working"
    );

    // A truncated file is caught too.
    std::fs::write(&victim, &bytes[..100]).unwrap();
    assert!(matches!(
        engine.table_data(&residents).await,
        Err(Error::Unavailable {
            problem: DataProblem::Corrupt { index: 2, .. },
            ..
        })
    ));
}

#[tokio::test]
async fn missing_data_and_mismatched_columns_are_named() {
    let (dir, engine) = setup();
    std::fs::remove_dir_all(dir.path().join("gov/e_licences")).unwrap();
    let licences = manifest(
        "gov.e_licences",
        "gov/e_licences",
        &[("holder_id", DataType::String)],
    );
    assert!(matches!(
        engine.table_data(&licences).await,
        Err(Error::Unavailable {
            problem: DataProblem::NoFiles,
            ..
        })
    ));
    let wrong = manifest(
        "legal.entities",
        "legal/entities",
        &[
            ("credit_code", DataType::String),
            ("registered_capital", DataType::Int64),
            ("nope", DataType::String),
        ],
    );
    let err = engine.table_data(&wrong).await.unwrap_err().to_string();
    assert!(err.contains("registered_capital"), "{err}");
    let mut none = licences.clone();
    none.dataset = None;
    assert!(matches!(
        engine.table_data(&none).await,
        Err(Error::NoDataset { .. })
    ));
}

#[tokio::test]
async fn lookup_finds_exactly_the_keyed_rows() {
    use arrow::array::AsArray;
    let (dir, engine) = setup();
    // Keys straight from the files, independently of the engine.
    let file =
        std::fs::File::open(dir.path().join("population/residents/part-00001.parquet")).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let ids = batch.column(0).as_string::<i32>();
    let names = batch.column(1).as_string::<i32>();
    let (a, b) = (ids.value(3).to_owned(), ids.value(77).to_owned());
    let mut residents = manifest(
        "population.residents",
        "population/residents",
        &[("name", DataType::String), ("id_number", DataType::String)],
    );
    residents.key_column = Some("id_number".into());
    let found = engine
        .lookup(
            &residents,
            &[a.clone(), b.clone(), "110105194912310021".into()],
        )
        .await
        .unwrap();
    let rows: usize = found.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);
    let first = &found[0];
    assert_eq!(
        first.schema().field(0).name(),
        "name",
        "catalog column order"
    );
    assert_eq!(first.column(1).as_string::<i32>().value(0), a);
    assert_eq!(first.column(0).as_string::<i32>().value(0), names.value(3));
    assert!(
        engine
            .lookup(&residents, &["440605000000000000".into()])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_lookup_reading_some_columns_answers_the_rest_as_nulls_of_the_same_shape() {
    use arrow::array::{Array, AsArray};
    let (dir, engine) = setup();
    let ids = column_values(dir.path(), "population/residents", "id_number");
    let towns = column_values(dir.path(), "population/residents", "town");
    let mut residents = manifest(
        "population.residents",
        "population/residents",
        &[
            ("name", DataType::String),
            ("id_number", DataType::String),
            ("birth_date", DataType::Date),
            ("town", DataType::String),
        ],
    );
    residents.key_column = Some("id_number".into());
    let keys = vec![ids[5].clone(), ids[900].clone()];
    let whole = engine.lookup(&residents, &keys).await.unwrap();
    // Town only: the key column is read anyway, name and birth date are not.
    let some = engine
        .lookup_reading(&residents, &keys, &[3])
        .await
        .unwrap();
    let rows = |b: &[arrow::array::RecordBatch]| b.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(rows(&some), 2);
    assert_eq!(rows(&whole), 2);
    for b in &some {
        let names_of = |s: &arrow::datatypes::Schema| {
            s.fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names_of(&b.schema()), names_of(&whole[0].schema()));
        assert_eq!(b.column(2).data_type(), whole[0].column(2).data_type());
        assert_eq!(b.column(0).null_count(), b.num_rows(), "name not read");
        assert_eq!(
            b.column(2).null_count(),
            b.num_rows(),
            "birth date not read"
        );
        for r in 0..b.num_rows() {
            let id = b.column(1).as_string::<i32>().value(r);
            let at = ids.iter().position(|i| i == id).unwrap();
            assert!(keys.contains(&id.to_owned()));
            assert_eq!(b.column(3).as_string::<i32>().value(r), towns[at]);
        }
    }
}

/// Reads every value of a string column of a dataset, straight from the files.
fn column_values(dir: &std::path::Path, dataset: &str, column: &str) -> Vec<String> {
    citybrain_datagen::read_strings(&dir.join(dataset), column).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_of_many_keys_with_repeats_equals_the_files() {
    let (dir, engine) = setup();
    // Holders may hold several licences: the same key on several rows, possibly across pages.
    let holders = column_values(dir.path(), "gov/e_licences", "holder_id");
    let wanted: Vec<String> = holders.iter().step_by(7).cloned().collect();
    let set: std::collections::HashSet<&String> = wanted.iter().collect();
    let expected = holders.iter().filter(|h| set.contains(h)).count();
    let mut licences = manifest(
        "gov.e_licences",
        "gov/e_licences",
        &[("holder_id", DataType::String)],
    );
    licences.key_column = Some("holder_id".into());
    let found = engine.lookup(&licences, &wanted).await.unwrap();
    assert_eq!(found.iter().map(|b| b.num_rows()).sum::<usize>(), expected);
    assert!(expected > wanted.len() / 2);
    // Files are read at once, but answered in file order, each file's rows in row order.
    use arrow::array::{Array, AsArray};
    let in_files: Vec<&String> = holders.iter().filter(|h| set.contains(h)).collect();
    let answered: Vec<String> = found
        .iter()
        .flat_map(|b| {
            let c = b.column(0).as_string::<i32>();
            (0..c.len())
                .map(|r| c.value(r).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(answered.iter().collect::<Vec<_>>(), in_files);
    let files = std::fs::read_dir(dir.path().join("gov/e_licences"))
        .unwrap()
        .count();
    assert!(files > 2, "the keys span several files ({files})");
}

#[tokio::test]
async fn absent_keys_are_answered_from_the_key_index_alone() {
    // One file, one row group, several pages: a key between two pages passes the row group's
    // statistics, so only the page index can answer it.
    let dir = tempfile::tempdir().unwrap();
    citybrain_datagen::generate(&citybrain_datagen::Config::new(dir.path(), 3_000)).unwrap();
    let engine = Engine::new(DataRoot::parse(&format!("file://{}", dir.path().display())).unwrap());
    let path = dir.path().join("population/residents/part-00000.parquet");
    let md = parquet::file::metadata::ParquetMetaDataReader::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required)
        .parse_and_finish(&std::fs::File::open(&path).unwrap())
        .unwrap();
    assert_eq!(md.num_row_groups(), 1);
    let Some(parquet::file::page_index::column_index::ColumnIndexMetaData::BYTE_ARRAY(ci)) =
        md.column_index().map(|c| &c[0][0])
    else {
        panic!("no page index on the key column");
    };
    assert!(ci.num_pages() >= 2);
    let first_page_max = String::from_utf8(ci.max_value(0).unwrap().to_vec()).unwrap();
    let between_pages = format!("{first_page_max}0");

    let ids = column_values(dir.path(), "population/residents", "id_number");
    let mut residents = manifest(
        "population.residents",
        "population/residents",
        &[("id_number", DataType::String)],
    );
    residents.key_column = Some("id_number".into());
    assert_eq!(
        engine.lookup(&residents, &[ids[10].clone()]).await.unwrap()[0].num_rows(),
        1
    );
    // Destroy every data page but keep the file's size, footer and modification time: the
    // engine's cached footer and key index still describe it.
    let mut bytes = std::fs::read(&path).unwrap();
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let data_end = bytes.len() - 8 - footer_len as usize;
    bytes[4..data_end].iter_mut().for_each(|b| *b = 0xA5);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    // Between two pages, below and above every key: answered without reading a page.
    for absent in [
        between_pages.as_str(),
        "110105194912310021",
        "990101199001011234",
    ] {
        let found = engine.lookup(&residents, &[absent.into()]).await;
        assert!(found.unwrap().is_empty(), "{absent}");
    }
    // Inside a page's range too: the key filter (built before the first answer for a table this
    // small) rules them out. A false positive (~1%) would read the damaged page and fail.
    let mut answered = 0;
    for i in 0..30 {
        let inside = format!("{}0", ids[100 + i * 50]);
        if let Ok(found) = engine.lookup(&residents, &[inside]).await {
            assert!(found.is_empty());
            answered += 1;
        }
    }
    assert!(
        answered >= 27,
        "{answered} of 30 absent keys answered from memory"
    );
    // A key that is there needs its page, which is now garbage: the read fails, cleanly.
    let err = engine
        .lookup(&residents, &[ids[10].clone()])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
}

/// Large text is a valid string column for SQL, but the key paths compare `Utf8` keys: a key
/// column stored as large text is refused cleanly, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_column_of_large_text_is_refused_not_a_panic() {
    use arrow::array::{LargeStringArray, RecordBatch};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t/keys");
    std::fs::create_dir_all(&data).unwrap();
    let ids = LargeStringArray::from(vec!["440605199001010011", "440605199001010022"]);
    let batch = RecordBatch::try_from_iter([("id_number", Arc::new(ids) as _)]).unwrap();
    let file = std::fs::File::create(data.join("part-00000.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let engine = Engine::new(DataRoot::parse(&format!("file://{}", dir.path().display())).unwrap());
    let mut table = manifest("t.keys", "t/keys", &[("id_number", DataType::String)]);
    table.key_column = Some("id_number".into());
    let got = engine.lookup(&table, &["440605199001010011".into()]).await;
    assert!(matches!(got, Err(Error::Unavailable { .. })), "{got:?}");
}

/// Every column of the residents' files, as the catalog lists them.
fn all_resident_columns() -> TableManifest {
    use DataType::{Date, String as S};
    let cols = [
        ("id_number", S),
        ("name", S),
        ("gender", S),
        ("birth_date", Date),
        ("ethnicity", S),
        ("phone", S),
        ("address_id", S),
        ("household_address", S),
        ("town", S),
        ("registration_type", S),
    ];
    let mut m = manifest("population.residents", "population/residents", &cols);
    m.key_column = Some("id_number".into());
    m
}

async fn answer(
    engine: &Engine,
    table: &TableManifest,
    keys: &[String],
    read: Option<&[usize]>,
) -> Vec<arrow::array::RecordBatch> {
    match read {
        None => engine.lookup(table, keys).await,
        Some(r) => engine.lookup_reading(table, keys, r).await,
    }
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_reads_answer_as_the_record_reader_does() {
    use arrow::compute::concat_batches;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = citybrain_datagen::Config::new(dir.path(), 3_000);
    // Many small pages a file: a lookup reads a page or two, a large batch every page of a
    // file; point reads must answer both exactly as the record reader does.
    cfg.rows_per_file = 1_500;
    cfg.page_rows = 64;
    citybrain_datagen::generate(&cfg).unwrap();
    let root = || DataRoot::parse(&format!("file://{}", dir.path().display())).unwrap();
    let (point, record) = (
        Engine::new(root()),
        Engine::new(root()).without_point_reads(),
    );
    let table = all_resident_columns();
    let ids = column_values(dir.path(), "population/residents", "id_number");
    let absent = format!("{}0", &ids[5][..17]);
    let mut lookups: Vec<Vec<String>> = ids.iter().step_by(97).map(|k| vec![k.clone()]).collect();
    lookups.push(vec![absent.clone()]);
    lookups.push(ids.iter().step_by(401).cloned().chain([absent]).collect());
    lookups.push(ids.iter().step_by(3).cloned().collect());
    let read_some = [0usize, 3, 8];
    let rows = |b: &[arrow::array::RecordBatch]| b.iter().map(|b| b.num_rows()).sum::<usize>();
    for keys in &lookups {
        for read in [None, Some(&read_some[..])] {
            let got = answer(&point, &table, keys, read).await;
            let want = answer(&record, &table, keys, read).await;
            let expected = keys.iter().filter(|k| ids.contains(k)).count();
            assert_eq!(rows(&got), expected, "{} keys", keys.len());
            assert_eq!(rows(&want), expected, "{} keys", keys.len());
            if expected > 0 {
                let got = concat_batches(&got[0].schema(), &got).unwrap();
                let want = concat_batches(&want[0].schema(), &want).unwrap();
                assert_eq!(got, want, "{} keys, reading {read:?}", keys.len());
            }
        }
    }
}
